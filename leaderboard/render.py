"""Leaderboard output: a Markdown table for the README and a static, self-contained page.

The page is one HTML file with its CSS, its sorting script and its charts (inline SVG)
inside, plus a ``results/`` folder of the results files it links to: it can be opened
from disk, attached to an e-mail or served by any static host, with nothing to fetch.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from pathlib import Path

from aims.leaderboard.entries import MODALITIES, PSEUDO_MODALITIES, REPORTED, Entry

_LABELS = {"thermal": "Thermal", "polarization": "Polarization", "depth": "Depth", "hha": "HHA",
           "nir": "NIR", "rgb-thermal": "RGB-T", "rgb-depth": "RGB-D", "rgb-hha": "RGB-HHA",
           "rgb-nir": "RGB-NIR", "polarization-zju": "Polarization (ZJU)"}
_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac")

#: README markers between which `aims leaderboard build --readme` writes the table
README_START, README_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def sections(entries: Sequence[Entry]) -> list[tuple[str, list[str], list[Entry]]]:
    """(title, columns, rows) per table: one per protocol for the modalities, then the
    RGB-X and alignment tables; each sorted by its mean (best first)."""
    out = []
    protocols = sorted({e.protocol for e in entries if e.group == "modalities"})
    for protocol in protocols:
        rows = [e for e in entries if e.group == "modalities" and e.protocol == protocol]
        extra = sorted({k for e in rows for k in e.miou if k not in MODALITIES})
        out.append((f"Modalities — protocol {protocol}", [*MODALITIES, *extra], rows))
    for group, title, columns in (("rgb-x", "RGB-X pseudo modalities", list(PSEUDO_MODALITIES)),
                                  ("alignment ablation", "Cross-modal alignment (polarization, LoRA)",
                                   ["polarization"])):
        rows = [e for e in entries if e.group == group]
        if rows:
            protocol = "/".join(sorted({e.protocol for e in rows}))
            out.append((f"{title} — protocol {protocol}", columns, rows))
    for _, columns, rows in out:
        rows.sort(key=lambda e: -(e.mean if e.mean is not None else
                                  max((v for v in e.miou.values() if v is not None), default=-1)))
    return out


def markdown(entries: Sequence[Entry]) -> str:
    """The leaderboard as Markdown tables (mIoU %, best mean first)."""
    parts = []
    for title, columns, rows in sections(entries):
        with_mean = title.startswith("Modalities")
        head = ["method", "model", "trainable params (M)", *(_LABELS.get(c, c) for c in columns)]
        head += ["mean"] if with_mean else []
        head += ["source"]
        lines = [f"**{title}** (mIoU %)", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * 3 + "---:|" * (len(columns) + with_mean) + "---|"]
        for e in rows:
            source = e.source if e.link is None else f"[{e.source}](leaderboard/site/{e.link})"
            cells = [e.method, e.model, _fmt(e.trainable_params_m, 1),
                     *(_fmt(e.miou.get(c)) for c in columns)]
            cells += [_fmt(e.mean)] if with_mean else []
            cells += [source + (f" ({e.note})" if e.note else "")]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the leaderboard markers; returns whether it changed."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} … {README_END} block")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{table}{README_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def bar_chart(columns: Sequence[str], rows: Sequence[Entry], *, width: int = 900, height: int = 240) -> str:
    """Grouped bars, one group per modality, one bar per entry (inline SVG)."""
    rows = list(rows)[: len(_PALETTE)]
    left, bottom, top = 40, 40, 16
    plot_w, plot_h = width - left - 10, height - bottom - top
    group_w = plot_w / max(len(columns), 1)
    bar_w = group_w * 0.8 / max(len(rows), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'class="chart" aria-label="mIoU per modality">']
    for tick in range(0, 101, 20):
        y = top + plot_h * (1 - tick / 100)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for g, column in enumerate(columns):
        x0 = left + g * group_w + group_w * 0.1
        for i, entry in enumerate(rows):
            value = entry.miou.get(column)
            if value is None:
                continue
            h = plot_h * value / 100
            out.append(f'<rect x="{x0 + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.92:.1f}" '
                       f'height="{h:.1f}" fill="{_PALETTE[i]}"><title>{html.escape(entry.method)} · '
                       f'{html.escape(_LABELS.get(column, column))}: {value:.2f}</title></rect>')
        out.append(f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{height - bottom + 18}" '
                   f'text-anchor="middle">{html.escape(_LABELS.get(column, column))}</text>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{_PALETTE[i]}"></i>{html.escape(e.method)}</span>'
                     for i, e in enumerate(rows))
    return "".join(out) + f'<div class="legend">{legend}</div>'


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem}
p.lead{color:#57606a;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{padding:.35rem .6rem;border-bottom:1px solid #d8dee4;text-align:left;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none}
th[aria-sort=descending]::after{content:" ▼"}th[aria-sort=ascending]::after{content:" ▲"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.reported td{color:#57606a}tr.reported td.source{font-style:italic}td.source{white-space:normal}
td.best{font-weight:700}
svg.chart{width:100%;height:auto;font-size:11px}svg .grid{stroke:#e6e9ed}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1rem;font-size:12px;color:#57606a}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
footer{margin-top:3rem;color:#57606a;font-size:12px}
"""

_JS = """
document.querySelectorAll("table.board").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var desc = th.getAttribute("aria-sort") !== "descending";
      table.querySelectorAll("th").forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (x === "" && y === "") return 0;
        if (x === "") return 1;
        if (y === "") return -1;
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return desc ? -cmp : cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _cell(value: float | None, best: bool = False) -> str:
    cls = "num best" if best else "num"
    return f'<td class="{cls}" data-value="{"" if value is None else value}">{_fmt(value)}</td>'


def _table(title: str, columns: Sequence[str], rows: Sequence[Entry]) -> str:
    with_mean = title.startswith("Modalities")
    head = ["method", "model", "params (M)", *(_LABELS.get(c, c) for c in columns)]
    head += ["mean"] if with_mean else []
    head += ["source"]
    best = {c: max((e.miou.get(c) for e in rows if e.miou.get(c) is not None), default=None) for c in columns}
    body = []
    for e in rows:
        source = html.escape(e.source)
        if e.link:
            source = f'<a href="{html.escape(e.link)}">{source}</a>'
        if e.note:
            source += f' <small>({html.escape(e.note)})</small>'
        cells = [f'<td data-value="{html.escape(e.method)}">{html.escape(e.method)}</td>',
                 f'<td data-value="{html.escape(e.model)}">{html.escape(e.model)}</td>',
                 _cell(e.trainable_params_m)]
        cells += [_cell(e.miou.get(c), e.miou.get(c) is not None and e.miou.get(c) == best[c]) for c in columns]
        cells += [_cell(e.mean)] if with_mean else []
        cells.append(f'<td class="source" data-value="{html.escape(e.source)}">{source}</td>')
        cls = "reported" if e.source == REPORTED else "scored"
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return (f'<table class="board"><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table>')


def page(entries: Sequence[Entry], *, version: str) -> str:
    """The leaderboard as one self-contained HTML document."""
    blocks = []
    for title, columns, rows in sections(entries):
        blocks.append(f"<h2>{html.escape(title)}</h2>")
        blocks.append(_table(title, columns, rows))
        if title.startswith("Modalities"):
            blocks.append(bar_chart(columns, rows))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIMS leaderboard</title><style>{_CSS}</style></head>
<body>
<h1>AIMS leaderboard</h1>
<p class="lead">Promptable segmentation on non-RGB modalities: one positive click per instance, mIoU (%) over
the instances of each modality's test split. Click a column to sort. Rows marked “{REPORTED}” are the SimCMF
paper's numbers (SAM ViT-B), which select the best epoch on the test split; scored rows link to their results files.</p>
{"".join(blocks)}
<footer>Built by aims {html.escape(version)} · <code>aims leaderboard build</code></footer>
<script>{_JS}</script>
</body></html>
"""


def build_site(entries: Sequence[Entry], results_dir: Path | None, out: Path, *, version: str) -> Path:
    """Write ``out/index.html`` and copy the linked results files beside it."""
    out.mkdir(parents=True, exist_ok=True)
    if results_dir is not None and Path(results_dir).is_dir():
        target = out / "results"
        target.mkdir(exist_ok=True)
        for e in entries:
            if e.link:
                shutil.copyfile(Path(results_dir) / Path(e.link).name, out / e.link)
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(page(entries, version=version), encoding="utf-8")
    tmp.replace(index)
    return index
