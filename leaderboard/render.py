"""Leaderboard output: a Markdown table for the README and a static, self-contained page.

The page is one HTML file with its CSS, its sorting script and its charts (inline SVG)
inside, plus a ``results/`` folder of the results files it links to: it can be opened
from disk, attached to an e-mail or served by any static host, with nothing to fetch.

Every name shown comes from a results file anyone can submit, so every piece of text is
escaped for where it lands: :func:`md_text` for Markdown table cells (pipes, emphasis,
links, code, HTML and its comments — a name holding the README's end marker must stay a
name), :func:`html_text` for HTML text and attributes (the SVG charts included). The page's
only script is a constant; no user data is embedded in it. Every file is written atomically.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aims.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from aims.errors import AimsError
from aims.leaderboard.entries import (
    ADAPTER_SWEEP,
    ALIGNMENT,
    DISPLAY_LABELS,
    HEADLINE_COLUMNS,
    MODALITIES,
    NOT_IN_MEAN,
    REPORTED,
    RGB_X,
    RGB_X_COLUMNS,
    RGB_X_SYSTEMS,
    UNSHUFFLED_PRIOR,
    Entry,
    paper_results,
    safe_url,
)

_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac")

#: README markers between which `aims leaderboard build --readme` writes the table
README_START, README_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


class ReadmeMarkersError(AimsError, ValueError):
    """The README's leaderboard block is missing or ambiguous (a ``ValueError`` too, which
    is what callers of :func:`update_readme` have always caught)."""


#: longest name shown; the schema allows 200 characters, reference rows are shorter
MAX_SHOWN_CHARS = 300
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")


def plain_text(text: object) -> str:
    """One line of displayable text: control characters and line/paragraph separators
    become spaces, bidirectional overrides are dropped, and the length is capped."""
    chars = (" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
             for c in str(text).translate(_BIDI))
    out = "".join(chars)
    return out if len(out) <= MAX_SHOWN_CHARS else out[:MAX_SHOWN_CHARS - 1] + "…"


def md_text(text: object) -> str:
    """Text for a Markdown table cell that renders as itself: backslash-escape Markdown's
    punctuation (``\\ ` * _ [ ] | ~ $``, the last for GitHub's math) and write ``& < >`` as
    entities, so no name can start a link, code span, emphasis, HTML tag or comment, or end
    the cell or the README block."""
    escaped = _MD_SPECIAL.sub(r"\\\1", plain_text(text))
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_text(text: object) -> str:
    """Text for HTML content or a quoted attribute value (SVG included)."""
    return html.escape(plain_text(text), quote=True)


def link_path(link: str) -> str:
    """A relative link with every character outside ``[A-Za-z0-9/._~-]`` percent-encoded
    (no scheme, no markup, no parenthesis can survive)."""
    return quote(str(link), safe="/")


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell: a dash for none/NaN/inf, and never hundreds of digits
    (validated values are percentages and millions of parameters)."""
    value = _finite(value)
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if abs(value) < 1e9 else f"{value:.3g}"


@dataclass
class Section:
    """One table of the board: its rows, the metric columns, and what else it shows."""

    group: str
    title: str
    columns: list[str]
    rows: list[Entry]
    footnotes: list[str] = field(default_factory=list)

    @property
    def with_mean(self) -> bool:
        return self.group == MODALITIES

    def lead(self) -> list[tuple[str, int | None]]:
        """(header, decimals; None for text) of the columns before the metrics."""
        if self.group == ADAPTER_SWEEP:
            return [("knob", None), ("value", 0), ("method", None), ("model", None)]
        if self.group == RGB_X_SYSTEMS:
            return [("method", None), ("model", None), ("strategy", None), ("params (M)", 1),
                    ("trainable params (M)", 1)]
        return [("method", None), ("model", None), ("trainable params (M)", 1)]

    def lead_values(self, e: Entry) -> list[str | float | None]:
        if self.group == ADAPTER_SWEEP:
            knob, value = e.sweep or ("", None)
            return [knob, value, e.method, e.model]
        if self.group == RGB_X_SYSTEMS:
            return [e.method, e.model, e.strategy, e.params_m, e.trainable_params_m]
        return [e.method, e.model, e.trainable_params_m]

    def best(self) -> dict[tuple[str, str], float]:
        """The best value of each column among the rows of each protocol: a paper row of
        protocol ``simcmf-v1`` never takes the bold from a scored ``aims-v1`` row."""
        out: dict[tuple[str, str], float] = {}
        for e in self.rows:
            for c in self.columns:
                v = _finite(e.miou.get(c))
                if v is not None and v > out.get((e.protocol, c), -math.inf):
                    out[(e.protocol, c)] = v
        return out


def _labels(names: Sequence[str]) -> str:
    return ", ".join(DISPLAY_LABELS.get(n, n) for n in names)


def mean_footnote() -> str:
    """What the "mean" column averages, from the records: the headline modalities only."""
    text = f"mean: the average of the {len(HEADLINE_COLUMNS)} headline modalities ({_labels(HEADLINE_COLUMNS)})"
    if NOT_IN_MEAN:
        text += f"; {_labels(NOT_IN_MEAN)} ({', '.join(NOT_IN_MEAN)}) is scored and shown but not averaged"
    return text + "."


def _protocols(rows: Sequence[Entry]) -> str:
    return "/".join(sorted({e.protocol for e in rows}))


def sections(entries: Sequence[Entry]) -> list[Section]:
    """One table per protocol for the modalities, then Table 2 (RGB-X pseudo modalities),
    Table 6 (RGB-X methods), the alignment ablation and the Fig. 6 sweeps; rows best first,
    except the sweeps, which keep the figure's knob and value order."""
    out = []
    for protocol in sorted({e.protocol for e in entries if e.group == MODALITIES}):
        rows = [e for e in entries if e.group == MODALITIES and e.protocol == protocol]
        extra = sorted({k for e in rows for k in e.miou if k not in HEADLINE_COLUMNS})
        out.append(Section(MODALITIES, f"Modalities — protocol {protocol}", [*HEADLINE_COLUMNS, *extra], rows,
                           [mean_footnote()]))
    table6 = paper_results().get("notes_table6")
    for group, title, columns, notes in (
            (RGB_X, "RGB-X pseudo modalities (shuffled RGB + X, paper's Table 2)", list(RGB_X_COLUMNS), []),
            (RGB_X_SYSTEMS, "RGB-X methods on SAM (paper's Table 6)", list(RGB_X_COLUMNS),
             [*([table6] if table6 else []),
              "GoPT and IV-tuning have no AIMS numbers in their papers: their rows appear once scored. "
              f"CMX, ViPT, GoPT and IV-tuning see RGB and X as separate, un-shuffled inputs ({UNSHUFFLED_PRIOR})."]),
            (ALIGNMENT, "Cross-modal alignment (polarization, LoRA)", ["polarization"], []),
            (ADAPTER_SWEEP, "Adapter size sweeps (polarization, LoRA; paper's Fig. 6)", ["polarization"],
             ["k: kernel size, d: hidden width, n: number of conv layers of the cross-modal alignment module "
              "(baselines: projector paper-n{n}-k{k}-d{d}); "
              "one knob varies at a time, the others stay at the paper's default."])):
        rows = [e for e in entries if e.group == group]
        if rows:
            out.append(Section(group, f"{title} — protocol {_protocols(rows)}", columns, rows, list(notes)))
    for section in out:
        if section.group == ADAPTER_SWEEP:
            knobs = list(dict.fromkeys(e.sweep[0] for e in section.rows if e.sweep))
            section.rows.sort(key=lambda e: (knobs.index(e.sweep[0]), e.sweep[1]) if e.sweep else (len(knobs), 0))
        else:
            section.rows.sort(key=lambda e: -(e.mean if e.mean is not None else
                                              max((v for v in e.miou.values() if v is not None), default=-1)))
        if len({e.protocol for e in section.rows}) > 1:
            section.footnotes.append("Bold: the best value of a column among the rows of the same protocol "
                                     "(numbers of different protocols are not compared).")
    return out


def _md_value(value: str | float | None, digits: int | None) -> str:
    return md_text(value or "") if digits is None else _fmt(value, digits)  # type: ignore[arg-type]


def markdown(entries: Sequence[Entry]) -> str:
    """The leaderboard as Markdown tables (mIoU %, best mean first); every name escaped."""
    parts = []
    for s in sections(entries):
        lead = s.lead()
        head = [h for h, _ in lead] + [DISPLAY_LABELS.get(c, c) for c in s.columns]
        head += ["mean"] if s.with_mean else []
        head += ["source"]
        align = "".join("---|" if digits is None else "---:|" for _, digits in lead)
        lines = [f"**{md_text(s.title)}** (mIoU %)", "", "| " + " | ".join(md_text(h) for h in head) + " |",
                 "|" + align + "---:|" * (len(s.columns) + s.with_mean) + "---|"]
        for e in s.rows:
            source = md_text(e.source)
            if e.link is not None:
                source = f"[{source}](leaderboard/site/{link_path(e.link)})"
            cells = [_md_value(v, digits) for v, (_, digits) in zip(s.lead_values(e), lead)]
            cells += [_fmt(e.miou.get(c)) for c in s.columns]
            cells += [_fmt(e.mean)] if s.with_mean else []
            cells += [source + (f" ({md_text(e.note)})" if e.note else "")]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [md_text(n) for n in s.footnotes] if s.footnotes else []
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


#: largest README read by :func:`update_readme`
MAX_README_BYTES = 16 * 1024 * 1024


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the leaderboard markers; returns whether it changed.

    The README must hold exactly one start and one end marker, in that order, and the
    table none (names are escaped by :func:`markdown`), so rebuilding is idempotent: the
    block can never grow. The file is read bounded and replaced atomically."""
    from aims.results import read_regular_file

    if README_START in table or README_END in table:
        raise AimsError("the leaderboard table holds a README marker; it cannot be written into a README "
                        "(names must be escaped with md_text).")
    raw = read_regular_file(readme, limit=MAX_README_BYTES, what="README")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AimsError(f"{readme} is not UTF-8 text; the leaderboard table goes into a UTF-8 README.",
                        path=readme) from None
    starts, ends = text.count(README_START), text.count(README_END)
    if starts != 1 or ends != 1 or text.index(README_START) > text.index(README_END):
        raise ReadmeMarkersError(f"{readme} has {starts} {README_START} and {ends} {README_END} line(s); the "
                                 "table needs exactly one of each, the start line first", path=readme)
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{table}{README_END}{tail}"
    if new != text:
        _write(readme, new)
    return new != text


def _write(path: Path, content: str | bytes) -> None:
    """Atomic write (temporary sibling + rename; a link at ``path`` is replaced, never
    followed), with a failure as a clear :class:`AimsError`."""
    try:
        if isinstance(content, bytes):
            atomic_write_bytes(path, content)
        else:
            atomic_write_text(path, content)
    except OSError as exc:
        raise AimsError(f"cannot write {path}: {exc.strerror or exc}; free space or choose a writable "
                        "folder.", path=path) from None


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
            value = _finite(entry.miou.get(column))
            if value is None:
                continue
            h = plot_h * min(max(value, 0.0), 100.0) / 100  # a bar never leaves the plot
            out.append(f'<rect x="{x0 + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.92:.1f}" '
                       f'height="{h:.1f}" fill="{_PALETTE[i]}"><title>{html_text(entry.method)} · '
                       f'{html_text(DISPLAY_LABELS.get(column, column))}: {value:.2f}</title></rect>')
        out.append(f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{height - bottom + 18}" '
                   f'text-anchor="middle">{html_text(DISPLAY_LABELS.get(column, column))}</text>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{_PALETTE[i]}"></i>{html_text(e.method)}</span>'
                     for i, e in enumerate(rows))
    return "".join(out) + f'<div class="legend">{legend}</div>'


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1320px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem}
p.lead{color:#57606a;margin-top:0}
.scroll{overflow-x:auto;max-width:100%;margin:.6rem 0}
table{border-collapse:collapse;width:100%}
th,td{padding:.35rem .5rem;border-bottom:1px solid #d8dee4;text-align:left;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:normal;vertical-align:bottom;min-width:3.2rem}
th[aria-sort=descending]::after{content:" ▼"}th[aria-sort=ascending]::after{content:" ▲"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.reported td{color:#57606a}tr.reported td.source{font-style:italic}td.source{white-space:normal;min-width:11rem}td.text{white-space:normal;min-width:5rem;max-width:18rem}
@media (max-width:600px){td.text{white-space:nowrap;max-width:none}td.text:first-child{white-space:normal;min-width:6rem;max-width:9rem}body{margin:1rem auto}}
th:first-child,td:first-child{position:sticky;left:0;background:#fff;z-index:1}th:first-child{background:#f6f8fa}
td.best{font-weight:700}td.num small{color:#6e7781;font-weight:400}td.links a{margin:0 .1rem}
p.note{color:#57606a;font-size:12px;margin:.2rem 0}svg.sweep .axis{font-weight:700}
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


def _cell(value: float | None, best: bool = False, ci: tuple[float, float] | None = None, digits: int = 2) -> str:
    """A number cell; a scored value carries ± the half-width of its 95 % bootstrap
    interval, and the interval itself as the cell's tooltip."""
    cls = "num best" if best else "num"
    value = _finite(value)
    text = _fmt(value, digits)
    lo, hi = (_finite(ci[0]), _finite(ci[1])) if ci else (None, None)
    if value is not None and lo is not None and hi is not None:
        cls += " ci"
        text += (f'<small title="95 % bootstrap interval over images: {_fmt(lo)}–{_fmt(hi)}">'
                 f' ±{_fmt((hi - lo) / 2)}</small>')
    return f'<td class="{cls}" data-value="{"" if value is None else value}">{text}</td>'


def _text_cell(text: object, cls: str = "text") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<td{attr} data-value="{html_text(text)}">{html_text(text)}</td>'


def _links(e: Entry) -> str:
    """Paper, code and results file of a row; paper and code only as plain https URLs."""
    out = []
    for name, url in (("paper", safe_url(e.paper_url)), ("code", safe_url(e.code_url))):
        if url:
            out.append(f'<a href="{html_text(url)}" rel="noopener noreferrer">{name}</a>')
    if e.link:
        out.append(f'<a href="{html_text(link_path(e.link))}">results</a>')
    return " · ".join(out) or "—"


def _table(section: Section) -> str:
    lead = section.lead()
    head = [h for h, _ in lead] + [DISPLAY_LABELS.get(c, c) for c in section.columns]
    head += ["mean"] if section.with_mean else []
    head += ["date", "links", "source"]
    best = section.best()
    body = []
    for e in section.rows:
        source = html_text(e.source)
        if e.note:
            source += f' <small>({html_text(e.note)})</small>'
        cells = [_text_cell(v or "") if digits is None else _cell(v, digits=digits)  # type: ignore[arg-type]
                 for v, (_, digits) in zip(section.lead_values(e), lead)]
        for c in section.columns:
            value = _finite(e.miou.get(c))
            cells.append(_cell(value, value is not None and value == best.get((e.protocol, c)), e.ci95.get(c)))
        cells += [_cell(e.mean)] if section.with_mean else []
        cells += [_text_cell(e.date, "date"), f'<td class="links" data-value="">{_links(e)}</td>',
                  f'<td class="source" data-value="{html_text(e.source)}">{source}</td>']
        cls = "reported" if e.source == REPORTED else "scored"
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    table = (f'<table class="board"><thead><tr>{"".join(f"<th>{html_text(h)}</th>" for h in head)}'
             f'</tr></thead><tbody>{"".join(body)}</tbody></table>')
    # the wrapper, not the page, scrolls sideways on a narrow screen
    return f'<div class="scroll" role="region" tabindex="0" aria-label="{html_text(section.title)}">{table}</div>'


def sweep_chart(rows: Sequence[Entry], *, width: int = 900, height: int = 200) -> str:
    """One small line plot per Fig. 6 knob (mIoU against the knob's value), inline SVG."""
    points = [(e.sweep[0], e.sweep[1], v) for e in rows
              if e.sweep and (v := _finite(e.miou.get("polarization"))) is not None]
    knobs = list(dict.fromkeys(k for k, _, _ in points))
    if not knobs:
        return ""
    lo = math.floor(min(v for _, _, v in points)) - 1
    hi = math.ceil(max(v for _, _, v in points)) + 1
    panel_w, top, bottom, left = width / len(knobs), 18, 34, 44
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'class="chart sweep" aria-label="Fig. 6: polarization mIoU against each adapter knob">']
    for p, knob in enumerate(knobs):
        x0, x1 = p * panel_w + left, (p + 1) * panel_w - 16
        mine = sorted((x, v) for k, x, v in points if k == knob)
        xs = list(dict.fromkeys(x for x, _ in mine))

        def px(x: float) -> float:
            return x0 + (x1 - x0) * (xs.index(x) + 0.5) / len(xs)

        def py(v: float) -> float:
            return top + (height - top - bottom) * (hi - v) / (hi - lo)

        for tick in range(int(lo), int(hi) + 1):
            out.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" class="grid"/>')
            out.append(f'<text x="{x0 - 4:.1f}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
        path = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in mine)
        out.append(f'<polyline points="{path}" fill="none" stroke="{_PALETTE[p]}" stroke-width="2"/>')
        for x, v in mine:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3.5" fill="{_PALETTE[p]}">'
                       f'<title>{html_text(knob)} = {x:g}: {v:.1f}</title></circle>'
                       f'<text x="{px(x):.1f}" y="{py(v) - 7:.1f}" text-anchor="middle">{v:.1f}</text>'
                       f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 4}" text-anchor="middle" class="axis">'
                   f'{html_text(knob)}</text>')
    out.append("</svg>")
    return "".join(out)


def page(entries: Sequence[Entry], *, version: str) -> str:
    """The leaderboard as one self-contained HTML document."""
    blocks = []
    for section in sections(entries):
        blocks.append(f"<h2>{html_text(section.title)}</h2>")
        blocks.append(_table(section))
        blocks += [f'<p class="note">{html_text(n)}</p>' for n in section.footnotes]
        if section.group == MODALITIES:
            blocks.append(bar_chart(section.columns, section.rows))
        elif section.group == ADAPTER_SWEEP:
            blocks.append(sweep_chart(section.rows))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIMS leaderboard</title><style>{_CSS}</style></head>
<body>
<h1>AIMS leaderboard</h1>
<p class="lead">Promptable segmentation on non-RGB modalities: one positive click per instance, mIoU (%) over
the instances of each modality's test split. Click a column to sort. Rows marked “{REPORTED}” are the SimCMF
paper's numbers (SAM ViT-B), which select the best epoch on the test split; scored rows link to their results
files and show ± half the 95 % bootstrap interval over images (hover a number for the interval).</p>
{"".join(blocks)}
<footer>Built by aims {html_text(version)} · <code>aims leaderboard build</code></footer>
<script>{_JS}</script>
</body></html>
"""


def _site_folder(folder: Path, what: str, *, allow_link: bool) -> Path:
    """``folder`` as a directory (created if absent), or a clear error: a file where the
    folder goes is refused, not replaced; so is a link unless ``allow_link`` (the user's
    own ``--out`` may be one; a link planted inside it may not)."""
    if (folder.is_symlink() and not allow_link) or (folder.exists() and not folder.is_dir()):
        kind = "a link" if folder.is_symlink() else "a file"
        raise AimsError(f"{what} {folder} is not a folder (it is {kind}); pass a folder for the static page, "
                        "or a new path to create it.", path=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AimsError(f"cannot create {what} {folder}: {exc.strerror or exc}; choose a writable --out.",
                        path=folder) from None
    remove_stale_temporaries(folder)
    return folder


def build_site(entries: Sequence[Entry], results_dir: Path | None, out: Path, *, version: str) -> Path:
    """Write ``out/index.html`` and ``out/leaderboard.md`` and copy the linked results files
    (validated again, then written) into ``out/results/``; every write is atomic, and a
    link planted at any of those names is replaced, never written through."""
    from aims.results import load_results_and_bytes

    out = _site_folder(Path(out), "--out", allow_link=True)
    if results_dir is not None and Path(results_dir).is_dir():
        linked = [e for e in entries if e.link]
        if linked:
            copies = _site_folder(out / "results", "the page's results folder", allow_link=False)
            for e in linked:
                name = Path(e.link).name
                _, data = load_results_and_bytes(Path(results_dir) / name)
                _write(copies / name, data)
    _write(out / "leaderboard.md", markdown(entries))
    index = out / "index.html"
    _write(index, page(entries, version=version))
    return index
