"""The shuffle's errors; ``exit_code`` is what ``kexue shuffle`` exits with."""

from __future__ import annotations


class ShuffleError(Exception):
    """A shuffle that could not be done; ``exit_code`` is what ``kexue shuffle`` exits with."""

    exit_code = 1


class InputError(ShuffleError, ValueError):
    """Bad arguments or input (a missing file, an unterminated record with ``final_newline="error"``, ...); also a
    ``ValueError``, as kexue's other argument errors are."""

    exit_code = 2


class InsufficientSpace(ShuffleError):
    """Not enough free disk space, found before starting or when a write failed with ENOSPC."""

    exit_code = 3


class RecordTooLong(ShuffleError):
    """A record that does not fit the memory budget."""

    exit_code = 4


class VerifyError(ShuffleError):
    """``verify=True`` found that the output's records are not the input's."""

    exit_code = 5


class Interrupted(ShuffleError):
    """SIGINT or SIGTERM arrived; temporary files were removed and no output was left."""

    exit_code = 130


__all__ = ["InputError", "InsufficientSpace", "Interrupted", "RecordTooLong", "ShuffleError", "VerifyError"]
