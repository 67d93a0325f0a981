"""Global shuffle of line-based files far larger than memory: exact, bounded in memory and open files, crash-safe.

From 苏剑林, "有限内存下全局打乱几百G文件（Python）" (*Globally shuffling hundreds of GB of files with limited memory
(Python)*), 2021-09-08, https://kexue.fm/archives/8662.

Records are byte strings ended by a one-byte separator (``\\n``, or ``\\0`` with ``sep=b"\\0"``); they are never
decoded, so any ASCII-compatible encoding (UTF-8, GBK, Latin-1, ...), invalid UTF-8 and CRLF (the ``\\r`` stays with
its line) pass through untouched, and empty lines are records. (UTF-16/32 text, whose newline is several bytes, is
not split into lines correctly.) A file whose last record has no separator gets one appended
(``final_newline="add"``), otherwise that record would be glued to whatever record follows it in the output;
``final_newline="error"`` refuses such input.

Methods (N records, memory budget B bytes):

* ``"merge"`` (default, exact). Split the input into chunks of at most ~B bytes, shuffle each in memory
  (Fisher-Yates) and write it to a temporary file; then merge: at every output step pick chunk j with probability
  r_j / sum_i r_i, r_j being its remaining record count, and emit its next record. *Proof of uniformity:* the output
  is fixed by the word of chunk labels (r_j copies of label j) and the in-chunk orders. A given word has probability
  prod_j r_j! / N! (the numerators run through r_j, ..., 1 for each j, the denominators through N, ..., 1), the
  in-chunk orders are independent and uniform over prod_j r_j! possibilities, and each permutation is exactly one
  (word, orders) pair, so each has probability 1/N!, whatever the chunk sizes. The labels are drawn a batch at a
  time: the composition of the next b labels is multivariate hypergeometric, and given it their order is a uniform
  shuffle, which is the same distribution as b proportional draws. When there are more chunks than the open-file
  limit (or the memory for read buffers) allows, groups of chunks are merged into larger shuffled chunks first;
  by the same proof each is a uniform shuffle of its group, so every level stays exact.
* ``"scatter"`` (exact, Rao-Sandelius). Send each record to one of K temporary bucket files chosen independently
  and uniformly, then shuffle each bucket in memory and append the buckets in order. For a fixed permutation,
  summing over the bucket sizes gives sum K^-N prod_j 1/b_j! = K^-N K^N / N! = 1/N! (multinomial theorem). A bucket
  that comes out larger than memory is scattered again with fresh randomness, which keeps it exact.
* ``"naive"``: the post's own scheme, kept for comparison, **not a uniform permutation**: shuffle each chunk, then
  for r = 1, 2, ... write record r of every not yet exhausted chunk in a random order. Output block r holds exactly
  one record of each chunk, so e.g. the first two outputs never come from the same chunk; for 2 chunks of 2 lines
  only 16 of the 24 permutations can occur. Item-position marginals are uniform when chunks are equal in size, and
  a short last chunk lands in front.

Guarantees: memory for data stays within ``memory``, lowered to what the input needs (when its size is known) and
to 3/4 of the memory the machine has available (chunk bytes plus 24 bytes of index per record, read windows, one
staging buffer); open files stay under ``min(max_open, RLIMIT_NOFILE - 16)``; the input is never modified;
the output is written under a temporary name in its own folder, fsynced and renamed only when complete (shards:
a temporary folder renamed last); temporary files live in a folder made in ``tmp_dir`` (default: the output's
folder, not ``/tmp``, which is often RAM) and are removed on success, error, SIGINT and SIGTERM; before the first
pass the output and temporary folders are checked to be writable and to have room (``statvfs``), and what a killed
run (SIGKILL, power loss) left there is removed: only entries named, locked and owned as :mod:`.tempfiles`
describes, never anyone else's; any failure is one :class:`ShuffleError` naming the user's path, with no temporary
file and no partial output left; a full disk mid-run is an :class:`InsufficientSpace` error. The
same inputs (in the same order), ``memory``, ``method``, ``seed`` and library version give byte-identical output;
changing ``memory`` changes the chunking and so the output, which stays uniform (a ``memory`` lowered to the
machine's share makes the output depend on the machine: the report's ``memory`` is the budget used). Uniformity
is a property of the algorithm given ideal randomness: no PRNG reaches all n! orders of a large chunk, which is
harmless in practice.
Standard output as the output is allowed but not atomic.

Layout: :mod:`.records` (numpy byte primitives: find separators, move variable-length records without a Python
loop per record), :mod:`.reader` (chunked input, merge windows), :mod:`.sinks` (atomic files and shards),
:mod:`.budget`, :mod:`.tempfiles` (temporary names, locks, leftovers), :mod:`.preflight` (folder checks before
the first pass), :mod:`.passes` (the methods' passes), :mod:`.api`
(:func:`external_shuffle`), :mod:`.cli` (``kexue shuffle``; :func:`kexue.cli.main` registers it). Spec:
``shared/specs/07-shuffle.md``.
"""

from __future__ import annotations

from .api import METHODS, Method, ShuffleReport, external_shuffle
from .budget import Budget, parse_size
from .errors import InputError, InsufficientSpace, Interrupted, RecordTooLong, ShuffleError, VerifyError
from .reader import FinalNewline

__all__ = [
    "METHODS",
    "Budget",
    "FinalNewline",
    "InputError",
    "InsufficientSpace",
    "Interrupted",
    "Method",
    "RecordTooLong",
    "ShuffleError",
    "ShuffleReport",
    "VerifyError",
    "external_shuffle",
    "parse_size",
]
