"""What a reproduction returns: the post, its claim, what we measured, and a verdict decided by a written rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["holds", "does not hold", "inconclusive"]
VERDICTS: tuple[str, ...] = ("holds", "does not hold", "inconclusive")


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


@dataclass
class Result:
    """One reproduction's outcome.

    ``claim`` is the post's claim in one sentence; ``measured`` says in one sentence what we found; ``rule`` states
    how the verdict was decided. ``numbers`` go to results.json; ``figures`` are (file stem, matplotlib Figure)
    pairs that the report writes as PNG.
    """

    name: str
    post: Post
    claim: str
    measured: str
    verdict: Verdict
    rule: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    quick: bool = True

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
