"""The data registry: every named data set kexue reads, where it comes from, and the error for a missing one."""

from __future__ import annotations

from pathlib import Path


class MissingData(FileNotFoundError):
    """A named data set (or one of its files) is not in the data folder.

    The message names the set and the exact command that fetches it; ``kexue reproduce`` turns this error into the
    status ``not run`` with that message as the reason.
    """

    def __init__(self, name: str, folder: str | Path, detail: str = "") -> None:
        self.name = name
        self.folder = Path(folder)
        self.command = f"kexue data fetch {name}"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"data set {name!r} is not in {self.folder}{extra}: fetch it with `{self.command}` "
            f"(or set KEXUE_DATA to a folder that has it)"
        )

    def __reduce__(self):  # keep the constructor's arguments through pickling (multiprocessing children)
        return (type(self), (self.name, str(self.folder)))
