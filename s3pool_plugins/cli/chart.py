"""A self-contained HTML page of line charts: inline SVG and CSS, no script, no network.

:func:`line_chart` draws one SVG chart of several series over a shared time
axis, its legend below the plot; :func:`page` wraps an introduction (a
:data:`Block` each: paragraphs and lists), charts, a table and notes into an
HTML document. Every text is escaped; a text between backticks is code.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 880
HEIGHT = 240
"""The height of a chart without its legend; each row of the legend adds :data:`LEGEND_ROW`."""
LEGEND_ROW = 18
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 30, 34

Block = str | Sequence[str]
"""A block of an introduction: a paragraph (a text), or a list (a sequence of texts, one per item)."""

_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are ``(x, y)`` pairs (y None leaves a gap); ``dashed`` for reference lines."""

    label: str
    points: Sequence[tuple[float, float | None]]
    color: str
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``value`` (1 for values <= 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return float(step * power)
    return float(10 * power)


def _format_tick(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def line_chart(title: str, series: Sequence[Series], *, x_label: str, y_label: str, x_max: float | None = None) -> str:
    """An SVG chart of ``series`` (x from 0 to ``x_max``, y from 0 to a round ceiling of the data)."""
    xs = [x for line in series for x, _ in line.points]
    ys = [y for line in series for _, y in line.points if y is not None]
    top_x = nice_ceiling(x_max if x_max is not None else max(xs, default=1.0))
    top_y = nice_ceiling(max(ys, default=1.0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    legend = _legend_rows(series)
    height = HEIGHT + LEGEND_ROW * len(legend)

    def px(x: float) -> float:
        return _LEFT + plot_w * min(max(x / top_x, 0.0), 1.0)

    def py(y: float) -> float:
        return _TOP + plot_h * (1 - min(max(y / top_y, 0.0), 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{_LEFT}" y="18" class="title">{html.escape(title)}</text>',
    ]
    for i in range(5):
        value = top_y * i / 4
        y = py(value)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" class="grid"/>')
        label = _format_tick(value)
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    for i in range(6):
        value = top_x * i / 5
        x = px(value)
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{HEIGHT - _BOTTOM}" class="grid"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - _BOTTOM + 16}" class="tick" text-anchor="middle">'
            f"{_format_tick(value)}</text>"
        )
    parts.append(
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 4}" class="axis" text-anchor="end">{html.escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{_TOP + plot_h / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {_TOP + plot_h / 2:.1f})">{html.escape(y_label)}</text>'
    )
    for line in series:
        for run in _runs(line.points):
            coordinates = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
            dash = ' stroke-dasharray="6 4"' if line.dashed else ""
            parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{line.color}" stroke-width="2"{dash}/>')
    for row, entries in enumerate(legend):
        y = HEIGHT + LEGEND_ROW * row + 4
        for legend_x, line in entries:
            dash = ' stroke-dasharray="6 4"' if line.dashed else ""
            parts.append(
                f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 18}" y2="{y}" stroke="{line.color}" '
                f'stroke-width="2"{dash}/>'
            )
            parts.append(f'<text x="{legend_x + 22}" y="{y + 4}" class="legend">{html.escape(line.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _legend_rows(series: Sequence[Series]) -> list[list[tuple[float, Series]]]:
    """The legend's entries, placed left to right in as many rows as the width needs: (x, series) each."""
    rows: list[list[tuple[float, Series]]] = []
    x = float(WIDTH)
    for line in series:
        width = 30 + 6.5 * len(line.label)
        if x + width > WIDTH - _RIGHT:
            rows.append([])
            x = _LEFT
        rows[-1].append((x, line))
        x += width
    return rows


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of ``points`` without gaps (a None y ends a stretch)."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for x, y in points:
        if y is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((x, y))
    if current:
        runs.append(current)
    return runs


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 920px;
       color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #d0d7de; text-align: right; }
th:first-child, td:first-child { text-align: left; }
svg { display: block; margin: 0.5em 0 1em; }
svg .title { font-size: 14px; font-weight: 600; fill: #1f2328; }
svg .tick, svg .axis, svg .legend { font-size: 11px; fill: #57606a; }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
.note { color: #57606a; font-size: 0.9em; }
code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.9em; background: #f6f8fa;
       padding: 0.1em 0.3em; border-radius: 4px; }
li { margin: 0.3em 0; }
"""


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of text cells."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_html(text: str) -> str:
    """``text`` escaped, with each span between backticks as ``<code>``."""
    return _CODE.sub(lambda match: f"<code>{match.group(1)}</code>", html.escape(text, quote=False))


def block_html(block: Block, css_class: str | None = None) -> str:
    """A paragraph as ``<p>``, a list as ``<ul>`` with one ``<li>`` per item (of ``css_class``, if given)."""
    attribute = f' class="{css_class}"' if css_class else ""
    if isinstance(block, str):
        return f"<p{attribute}>{text_html(block)}</p>"
    return f"<ul{attribute}>" + "".join(f"<li>{text_html(item)}</li>" for item in block) + "</ul>"


def page(title: str, *, intro: Sequence[Block], table: str, charts: Sequence[str], notes: Sequence[Block]) -> str:
    """A complete HTML document: title, the introduction, a table (HTML), charts (SVG) and notes (blocks)."""
    paragraphs = "\n".join(block_html(block) for block in intro)
    footnotes = "\n".join(block_html(block, "note") for block in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{paragraphs}\n{table}\n"
        + "\n".join(charts)
        + f"\n{footnotes}\n</body>\n</html>\n"
    )
