"""Run reproductions and write ``DIR/index.html`` (with PNG figures) and ``DIR/results.json``."""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .runner import Outcome

_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700", "error": "#6e7781"}


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return html.escape(f"{v:.6g}")
    return html.escape(str(v))


def write_report(outcomes: list[Outcome], out: str | Path) -> Path:
    """Write figures, results.json and index.html into ``out``; return the index path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    sections = []
    for o in outcomes:
        rec: dict[str, Any] = {"name": o.name, "verdict": o.verdict, "seconds": round(o.seconds, 3)}
        if o.result is None:
            rec["error"] = o.error
            sections.append(
                f'<section id="{o.name}"><h2>{html.escape(o.name)} '
                f'<span class="v" style="background:{_COLOURS["error"]}">error</span></h2>'
                f"<pre>{html.escape(o.error or '')}</pre></section>"
            )
            records.append(rec)
            continue
        r = o.result
        figs = []
        for stem, fig in r.figures:
            fname = f"{o.name}-{stem}.png"
            tmp = folder / f".{fname}.tmp.png"
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
            os.replace(tmp, folder / fname)
            plt.close(fig)
            figs.append(fname)
        rec.update({
            "post": vars(r.post), "claim": r.claim, "measured": r.measured, "rule": r.rule, "quick": r.quick,
            "numbers": _jsonable(r.numbers), "figures": figs, "notes": r.notes,
            "tables": [{"title": t.title, "columns": t.columns, "rows": _jsonable(t.rows)} for t in r.tables],
        })
        records.append(rec)
        tables = "".join(
            f"<h3>{html.escape(t.title)}</h3><table><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in t.columns)}</tr>"
            + "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in t.rows)
            + "</table>"
            for t in r.tables
        )
        images = "".join(f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figs)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
        sections.append(
            f'<section id="{o.name}"><h2>{html.escape(o.name)} '
            f'<span class="v" style="background:{_COLOURS[r.verdict]}">{html.escape(r.verdict)}</span></h2>'
            f'<p class="post"><a href="{html.escape(r.post.url)}">{html.escape(r.post.title)}</a> '
            f"({html.escape(r.post.gloss)}), {html.escape(r.post.date)}</p>"
            f"<p><b>Claim.</b> {html.escape(r.claim)}</p><p><b>Measured.</b> {html.escape(r.measured)}</p>"
            f"<p><b>Verdict rule.</b> {html.escape(r.rule)}</p>{tables}{images}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f'<p class="t">{"quick" if r.quick else "full"} mode, {o.seconds:.1f} s</p></section>'
        )
    summary = "".join(
        f'<tr><td><a href="#{o.name}">{html.escape(o.name)}</a></td>'
        f'<td style="color:{_COLOURS[o.verdict]}">{html.escape(o.verdict)}</td><td>{o.seconds:.1f} s</td></tr>'
        for o in outcomes
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>kexue reproductions</title><style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:left}}
.v{{color:#fff;border-radius:.3rem;padding:.1rem .5rem;font-size:.8em;vertical-align:middle}}
img{{max-width:100%;display:block;margin:.5rem 0}}section{{border-top:1px solid #d0d7de;margin-top:2rem}}
.t,.post{{color:#57606a}}pre{{overflow:auto;background:#f6f8fa;padding:.5rem}}</style></head><body>
<h1>kexue: the posts' claims, re-measured</h1>
<table><tr><th>reproduction</th><th>verdict</th><th>time</th></tr>{summary}</table>
{''.join(sections)}</body></html>
"""
    _atomic_write_bytes(folder / "results.json", (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode())
    index = folder / "index.html"
    _atomic_write_bytes(index, page.encode("utf-8"))
    return index
