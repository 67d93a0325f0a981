"""What a reproduction returns: the post, its claim, what we measured, and a verdict decided by a written rule.

Every entry declares its **kind**:

* ``math``: an identity, a theorem or a closed form checked numerically. Verdict ``verified`` or ``not verified``.
* ``mechanics``: the implementation behaves as the post specifies (a sampler reaches every permutation, a memory
  saving appears). Verdict ``verified`` or ``not verified``.
* ``empirical``: a training or data effect. Verdict ``holds``, ``does not hold`` or ``inconclusive`` from a rule that
  is a pure function of the measurements (see :mod:`kexue.reproduce.rules`), or ``not measured`` when the models did
  not learn (or quick mode cannot measure the effect); ``reason`` then says why.

The runner adds two statuses of its own: ``not run`` (a data set is missing; the reason names the command that
fetches it) and ``error`` (the entry raised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Kind = Literal["math", "mechanics", "empirical"]
Verdict = Literal["verified", "not verified", "holds", "does not hold", "inconclusive", "not measured"]
#: Statuses the runner gives an entry that returned no result.
Status = Literal["not run", "error"]

KINDS: tuple[str, ...] = get_args(Kind)
VERDICTS: tuple[str, ...] = get_args(Verdict)
STATUSES: tuple[str, ...] = get_args(Status)
#: The verdicts each kind may return.
VERDICTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "math": ("verified", "not verified"),
    "mechanics": ("verified", "not verified"),
    "empirical": ("holds", "does not hold", "inconclusive", "not measured"),
}


@dataclass
class Post:
    """The blog post a reproduction is about."""

    title: str  # the Chinese title, as published
    gloss: str  # an English gloss of it
    date: str  # YYYY-MM-DD
    url: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.title!r}: row {i} has {len(row)} cells, expected {len(self.columns)}")


@dataclass(kw_only=True)
class Result:
    """One reproduction's outcome.

    ``claim`` is the post's claim in one sentence; ``measured`` says in one sentence what we found; ``rule`` states
    how the verdict was decided, in words. ``kind`` is ``math``, ``mechanics`` or ``empirical`` (module docstring).
    ``post_figure`` is the post's own figure for the claim, in one line ("no figure in the post" where it gives
    none); ``our_figure`` is ours, set beside it in the report's front table (3 significant digits). ``setup`` says
    what we ran: data, model, seeds, steps. ``reason`` explains a ``not measured`` or ``inconclusive`` verdict.
    ``skipped`` names the parts left out because a data set is missing, each with the command that fetches it.
    ``numbers`` go to results.json; ``figures`` are (file stem, matplotlib Figure) pairs the report writes as PNG.
    """

    name: str
    post: Post
    claim: str
    measured: str
    verdict: Verdict
    rule: str
    kind: Kind
    post_figure: str
    our_figure: str
    setup: str
    reason: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quick: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"expected kind one of {KINDS}, got {self.kind!r}")
        allowed = VERDICTS_BY_KIND[self.kind]
        if self.verdict not in allowed:
            raise ValueError(f"expected a verdict of a {self.kind} entry, one of {allowed}, got {self.verdict!r}")
        if self.verdict == "not measured" and not self.reason:
            raise ValueError("expected a reason with the verdict 'not measured', got none")
        for name in ("claim", "measured", "rule", "post_figure", "our_figure", "setup"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"expected a non-empty {name}, got {getattr(self, name)!r}")
