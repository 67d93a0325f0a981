"""Write the report: ``DIR/index.html`` (with PNG figures) and ``DIR/results.json``.

The page is rendered from ``templates/report.html`` by jinja2 with autoescaping on, so every string an entry returns
(claims, table cells, notes, tracebacks) is escaped; nothing here builds HTML. The front table has one row per entry:
the post, the claim in one line, the kind, the post's own figure beside ours, the verdict (with its reason) and the
time. Each entry's section gives the claim, what we ran, the rule, the verdict, tables, figures, notes and the parts
skipped for missing data. ``results.json`` carries the same fields, one record per entry, with the raw numbers.

Floats in tables are shown to 3 significant digits (:func:`sig3`); an entry that needs more digits passes the cell
as a string. Every file is written atomically (:func:`kexue._io.atomic_path`: a temporary file in the same folder,
then ``os.replace``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import atomic_path
from .result import STATUSES, VERDICTS
from .runner import Outcome

#: Every verdict and status, in the order the page counts them; each gets a CSS class ``v-<words-with-dashes>``.
_ORDER = VERDICTS + STATUSES
VERDICT_CLASS = {v: "v-" + v.replace(" ", "-") for v in _ORDER}

KIND_TEXT = (
    ("math", "an identity, a theorem or a closed form of the post, checked numerically."),
    ("mechanics", "the implementation behaves as the post specifies (a sampler reaches every permutation, a memory "
                  "saving appears)."),
    ("empirical", "a training or data effect, judged by a rule written in the entry from the measurements, with "
                  "thresholds from the measured noise (seeds, paired differences, standard errors)."),
)
VERDICT_TEXT = (
    ("verified", "a math or mechanics check came out as the post says."),
    ("not verified", "a math or mechanics check did not."),
    ("holds", "the empirical effect is there, beyond the measured noise, as the entry's rule states it."),
    ("does not hold", "the measurements rule the effect out (it is absent or goes the other way beyond the noise)."),
    ("inconclusive", "the noise is too large to decide either way; the reason says how large."),
    ("not measured", "no verdict: the models did not learn (they did not beat the trivial baseline), or quick mode "
                     "cannot measure the effect; the reason says which."),
    ("not run", "a data set is missing; the reason names the command that fetches it."),
    ("error", "the entry raised; its section has the traceback."),
)

_TEMPLATE = "report.html"


def sig3(x: Any) -> str:
    """A number to 3 significant digits for display: ``0.0447149 -> 0.0447``, ``1.7017 -> 1.70``, ``12345.6 -> 12300``.

    Integers (and bools, strings, anything not a real number) are shown as they are; magnitudes below 1e-3 or from
    1e6 up use scientific notation (``1.23e-05``); nan and inf are written as such.
    """
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", None) == 0:
        x = x.item()  # numpy / torch scalars
    if isinstance(x, bool) or isinstance(x, numbers.Integral) or not isinstance(x, numbers.Real):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    exponent = math.floor(math.log10(abs(x)))
    if exponent < -3 or exponent >= 6:
        return f"{x:.2e}"
    decimals = 2 - exponent
    rounded = round(x, decimals)
    # 9.996 -> 10.0: one digit fewer after the point
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > exponent:
        decimals -= 1
        rounded = round(x, decimals)
    return f"{rounded:.{max(decimals, 0)}f}"


_ABBREVIATIONS = ("e.g.", "i.e.", "vs.", "cf.", "etc.", "approx.", "fig.", "eq.", "al.", "resp.")


def one_line(text: str, limit: int = 160) -> str:
    """The first sentence of ``text`` (cut at a word with "…" if it is longer than ``limit`` characters).

    A sentence ends at ".", "!" or "?" before a space (not after "e.g.", "i.e.", "vs." and the like) or at "。！？".
    """
    text = " ".join(text.split())
    first = text
    for m in re.finditer(r"[.!?](?= )|[。！？]", text):
        if not text[: m.end()].lower().endswith(_ABBREVIATIONS):
            first = text[: m.end()]
            break
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0] if " " in first[:limit] else first[:limit]
    return cut.rstrip(",;: ") + "…"


def _time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    return str(x)


def _safe(stem: str) -> str:
    """A file-name-safe form of a figure's stem or an entry's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "figure"


def _entry(o: Outcome, anchor: str, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The template's view of one outcome and its results.json record (figures written here)."""
    post = o.result.post if o.result is not None else o.post
    status = "result" if o.result is not None else o.verdict
    common = {
        "name": o.name, "verdict": o.verdict, "status": status, "seconds": round(o.seconds, 3),
        "post": asdict(post) if post is not None else None,
        "kind": None, "claim": None, "measured": None, "rule": None, "setup": None,
        "post_figure": None, "our_figure": None, "reason": o.not_run, "skipped": [], "notes": [],
        "tables": [], "figures": [], "numbers": {}, "quick": None, "error": o.error,
    }
    view = dict(common, anchor=anchor, verdict_class=VERDICT_CLASS.get(o.verdict, "v-error"), time=_time(o.seconds),
                claim_line=None, figures=[], tables=[])
    record = dict(common)
    r = o.result
    if r is None:
        return view, record
    import matplotlib.pyplot as plt

    files = []
    for stem, fig in r.figures:
        fname = f"{anchor}-{_safe(stem)}.png"
        k = 2
        while fname in files:
            fname, k = f"{anchor}-{_safe(stem)}-{k}.png", k + 1
        with atomic_path(folder / fname) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(fname)
    fields = {
        "kind": r.kind, "claim": r.claim, "measured": r.measured, "rule": r.rule, "setup": r.setup,
        "post_figure": r.post_figure, "our_figure": r.our_figure, "reason": r.reason or None,
        "skipped": list(r.skipped), "notes": list(r.notes), "quick": r.quick,
    }
    view.update(fields, claim_line=one_line(r.claim),
                figures=[{"file": f, "stem": stem} for f, (stem, _) in zip(files, r.figures, strict=True)],
                tables=[{"title": t.title, "columns": [str(c) for c in t.columns],
                         "rows": [[{"text": sig3(v), "num": isinstance(v, numbers.Number) and not isinstance(v, bool)}
                                   for v in row] for row in t.rows]} for t in r.tables])
    record.update(fields, figures=files, numbers=_jsonable(r.numbers),
                  tables=[{"title": t.title, "columns": t.columns, "rows": _jsonable(t.rows)} for t in r.tables])
    return view, record


def _code_spans(text: Any) -> Any:
    """Escape ``text`` and set each `backtick-quoted` span (a command, a path) in ``<code>``: a jinja2 filter."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: leave the text as it is
        return escape(text)
    return Markup("").join(escape(p) if i % 2 == 0 else Markup("<code>") + escape(p) + Markup("</code>")
                           for i, p in enumerate(parts))


def _environment() -> Any:
    try:
        import jinja2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "the reproduction report needs jinja2: pip install 'kexue[reproduce]' (or pip install jinja2)"
        ) from e
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code_spans"] = _code_spans
    return env


def write_report(outcomes: list[Outcome], out: str | Path) -> Path:
    """Write the figures, ``results.json`` and ``index.html`` into ``out``; return the index path."""
    import matplotlib

    matplotlib.use("Agg")
    from .. import __version__
    from ..env import data_dir

    template = _environment().get_template(_TEMPLATE)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    views, records, anchors = [], [], set()
    for o in outcomes:
        anchor, k = _safe(o.name), 2
        while anchor in anchors or anchor in ("legend", "entries"):
            anchor, k = f"{_safe(o.name)}-{k}", k + 1
        anchors.add(anchor)
        view, record = _entry(o, anchor, folder)
        views.append(view)
        records.append(record)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    modes = {r.quick for o in outcomes if (r := o.result) is not None}
    page = template.render(
        entries=views,
        counts=sorted(counts.items(), key=lambda kv: _ORDER.index(kv[0]) if kv[0] in _ORDER else len(_ORDER)),
        mode=("quick" if modes == {True} else "full" if modes == {False} else "mixed" if modes else ""),
        kinds=KIND_TEXT, verdicts=VERDICT_TEXT, verdict_class=VERDICT_CLASS,
        data_folder=str(data_dir()), version=__version__,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    with atomic_path(folder / "results.json") as tmp:
        tmp.write_bytes((json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    index = folder / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_bytes(page.encode("utf-8"))
    return index
