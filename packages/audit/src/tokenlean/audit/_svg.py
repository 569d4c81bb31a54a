"""Small inline-SVG charts drawn in Python: no JavaScript, no fonts, no network.

Every chart is an ``<svg class="chart" data-chart="NAME">`` element with a
``<title>`` (read by screen readers) and its numbers as text labels, so the
report can be read without hovering anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

__all__ = ["bar_pair", "histogram", "scatter", "waterfall"]

_W, _H = 560, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 16, 28, 56
_FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"'
GOOD, BAD, BASE, MUTED, ACCENT = "#2f855a", "#c53030", "#2b6cb0", "#a0aec0", "#805ad5"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _open(name: str, title: str, width: int = _W, height: int = _H) -> list[str]:
    return [
        f'<svg class="chart" data-chart="{escape(name)}" role="img" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" {_FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]


def _empty(parts: list[str], message: str) -> str:
    parts.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" fill="#718096" '
                 f'data-empty="1">{escape(message)}</text></svg>')
    return "".join(parts)


def _axes(parts: list[str], x_label: str, y_label: str) -> None:
    x0, y0, x1 = _PAD_L, _H - _PAD_B, _W - _PAD_R
    parts.append(f'<line x1="{x0}" y1="{_PAD_T}" x2="{x0}" y2="{y0}" stroke="#4a5568"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#4a5568"/>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{_H - 8}" text-anchor="middle" '
                 f'fill="#2d3748">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{(_PAD_T + y0) / 2}" text-anchor="middle" fill="#2d3748" '
                 f'transform="rotate(-90 14 {(_PAD_T + y0) / 2})">{escape(y_label)}</text>')


def _y_ticks(parts: list[str], top: float, scale: Callable[[float], float], n: int = 4) -> None:
    for i in range(n + 1):
        value = top * i / n
        y = scale(value)
        parts.append(f'<line x1="{_PAD_L - 4}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" '
                     f'stroke="#edf2f7"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="#4a5568">{_fmt(value)}</text>')


def waterfall(steps: Sequence[tuple[str, float]], *, start_label: str, end_label: str,
              unit: str, title: str) -> str:
    """``start`` bar, one falling (or rising) bar per step, ``end`` bar.

    ``steps`` are (label, amount saved); the first item's amount is the start value.
    """
    parts = _open("waterfall", title)
    if not steps:
        return _empty(parts, "no data")
    start = steps[0][1]
    deltas = list(steps[1:])
    end = start - sum(d for _, d in deltas)
    running, top = start, start
    for _, d in deltas:
        running -= d
        top = max(top, running)
    top = top * 1.1 or 1.0
    plot_h = _H - _PAD_B - _PAD_T

    def y(value: float) -> float:
        return _PAD_T + plot_h * (1 - value / top)

    _y_ticks(parts, top, y)
    _axes(parts, "", unit)
    labels = [start_label, *(label for label, _ in deltas), end_label]
    n = len(labels)
    slot = (_W - _PAD_L - _PAD_R) / n
    width = slot * 0.6
    running = start
    for i, label in enumerate(labels):
        x = _PAD_L + slot * i + (slot - width) / 2
        if i == 0:
            lo, hi, color, shown = 0.0, start, BASE, start
        elif i == n - 1:
            lo, hi, color, shown = 0.0, end, ACCENT, end
        else:
            delta = deltas[i - 1][1]
            lo, hi = sorted((running - delta, running))
            color, shown = (GOOD if delta >= 0 else BAD), -delta
            running -= delta
        top_y, bottom_y = y(hi), y(lo)
        height = max(bottom_y - top_y, 1.0)
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{top_y:.1f}" width="{width:.1f}" '
                     f'height="{height:.1f}" fill="{color}"><title>{escape(label)}: '
                     f'{_fmt(shown)} {escape(unit)}</title></rect>')
        sign = "" if i in (0, n - 1) or shown <= 0 else "+"
        parts.append(f'<text x="{x + width / 2:.1f}" y="{top_y - 4:.1f}" text-anchor="middle" '
                     f'fill="#1a202c">{sign}{_fmt(shown)}</text>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
                     f'fill="#2d3748">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_pair(items: Sequence[tuple[str, float]], *, unit: str, title: str) -> str:
    """Plain bars (e.g. cost per 1M tokens before / after)."""
    parts = _open("bars", title)
    if not items:
        return _empty(parts, "no data")
    top = max(v for _, v in items) * 1.15 or 1.0
    plot_h = _H - _PAD_B - _PAD_T

    def y(value: float) -> float:
        return _PAD_T + plot_h * (1 - value / top)

    _y_ticks(parts, top, y)
    _axes(parts, "", unit)
    slot = (_W - _PAD_L - _PAD_R) / len(items)
    width = min(slot * 0.5, 140)
    colors = [BASE, GOOD, ACCENT, MUTED]
    for i, (label, value) in enumerate(items):
        x = _PAD_L + slot * i + (slot - width) / 2
        top_y = y(value)
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{top_y:.1f}" width="{width:.1f}" '
                     f'height="{max(y(0) - top_y, 1.0):.1f}" fill="{colors[i % len(colors)]}">'
                     f'<title>{escape(label)}: {_fmt(value)} {escape(unit)}</title></rect>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{top_y - 4:.1f}" text-anchor="middle" '
                     f'fill="#1a202c">{_fmt(value)}</text>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
                     f'fill="#2d3748">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(series: Sequence[tuple[str, Sequence[float], str]], *, low: float, high: float,
              bins: int, x_label: str, title: str) -> str:
    """Stacked histogram of one or more series over ``[low, high]``."""
    parts = _open("histogram", title)
    if not any(values for _, values, _ in series):
        return _empty(parts, "no cache lookups found a candidate")
    width_bin = (high - low) / bins
    counts = []
    for _, values, _ in series:
        row = [0] * bins
        for v in values:
            if not math.isfinite(v):
                continue
            k = min(bins - 1, max(0, int((v - low) / width_bin)))
            row[k] += 1
        counts.append(row)
    totals = [sum(row[k] for row in counts) for k in range(bins)]
    top = max(totals) * 1.15 or 1.0
    plot_h = _H - _PAD_B - _PAD_T

    def y(value: float) -> float:
        return _PAD_T + plot_h * (1 - value / top)

    _y_ticks(parts, top, y)
    _axes(parts, x_label, "requests")
    slot = (_W - _PAD_L - _PAD_R) / bins
    for k in range(bins):
        base = 0
        for (label, _, color), row in zip(series, counts, strict=True):
            if not row[k]:
                continue
            top_y, bottom_y = y(base + row[k]), y(base)
            parts.append(f'<rect class="bar" x="{_PAD_L + slot * k + 1:.1f}" y="{top_y:.1f}" '
                         f'width="{slot - 2:.1f}" height="{bottom_y - top_y:.1f}" fill="{color}">'
                         f'<title>{escape(label)}: {row[k]} in [{low + k * width_bin:.2f}, '
                         f'{low + (k + 1) * width_bin:.2f})</title></rect>')
            base += row[k]
    for k in range(0, bins + 1, max(1, bins // 5)):
        x = _PAD_L + slot * k
        parts.append(f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
                     f'fill="#4a5568">{low + k * width_bin:.2f}</text>')
    _legend(parts, [(label, color) for label, values, color in series if values])
    parts.append("</svg>")
    return "".join(parts)


def _legend(parts: list[str], items: Sequence[tuple[str, str]]) -> None:
    x = _PAD_L + 8
    for label, color in items:
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="17" fill="#2d3748">{escape(label)}</text>')
        x += 24 + 7 * len(label)


def scatter(series: Sequence[tuple[str, Sequence[tuple[float, float]], str]], *, x_label: str,
            y_label: str, title: str, name: str = "scatter", log: bool = False,
            diagonal: bool = False, y_range: tuple[float, float] | None = None) -> str:
    """Points per series; ``log`` puts both axes on a log10 scale; ``diagonal`` draws y = x."""
    parts = _open(name, title)
    points = [(x, y) for _, pts, _ in series for x, y in pts
              if math.isfinite(x) and math.isfinite(y) and (not log or (x > 0 and y > 0))]
    if not points:
        return _empty(parts, "no data")

    def t(v: float) -> float:
        return math.log10(v) if log else v

    xs = [t(x) for x, _ in points]
    ys = [t(y) for _, y in points]
    x_lo, x_hi = min(xs), max(xs)
    if y_range is not None:
        y_lo, y_hi = y_range
    else:
        y_lo, y_hi = min(ys), max(ys)
    if diagonal:
        x_lo = y_lo = min(x_lo, y_lo)
        x_hi = y_hi = max(x_hi, y_hi)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    span_x, span_y = x_hi - x_lo, y_hi - y_lo
    x_lo, x_hi = x_lo - span_x * 0.04, x_hi + span_x * 0.04
    if y_range is None:
        y_lo, y_hi = y_lo - span_y * 0.04, y_hi + span_y * 0.04
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_B - _PAD_T

    def px(v: float) -> float:
        return _PAD_L + plot_w * (v - x_lo) / (x_hi - x_lo)

    def py(v: float) -> float:
        return _PAD_T + plot_h * (1 - (v - y_lo) / (y_hi - y_lo))

    for i in range(5):
        fy = y_lo + (y_hi - y_lo) * i / 4
        fx = x_lo + (x_hi - x_lo) * i / 4
        shown_y = 10 ** fy if log else fy
        shown_x = 10 ** fx if log else fx
        parts.append(f'<line x1="{_PAD_L}" y1="{py(fy):.1f}" x2="{_W - _PAD_R}" y2="{py(fy):.1f}" '
                     f'stroke="#edf2f7"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{py(fy) + 4:.1f}" text-anchor="end" '
                     f'fill="#4a5568">{_fmt(shown_y)}</text>')
        parts.append(f'<text x="{px(fx):.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
                     f'fill="#4a5568">{_fmt(shown_x)}</text>')
    _axes(parts, x_label + (" (log)" if log else ""), y_label + (" (log)" if log else ""))
    if diagonal:
        parts.append(f'<line x1="{px(x_lo):.1f}" y1="{py(x_lo):.1f}" x2="{px(x_hi):.1f}" '
                     f'y2="{py(x_hi):.1f}" stroke="#718096" stroke-dasharray="4 3"/>')
    for label, pts, color in series:
        for x, y in pts:
            if not (math.isfinite(x) and math.isfinite(y)) or (log and (x <= 0 or y <= 0)):
                continue
            parts.append(f'<circle class="point" cx="{px(t(x)):.1f}" cy="{py(t(y)):.1f}" r="3" '
                         f'fill="{color}" fill-opacity="0.7"><title>{escape(label)}: '
                         f'{_fmt(x)}, {_fmt(y)}</title></circle>')
    _legend(parts, [(label, color) for label, pts, color in series if pts])
    parts.append("</svg>")
    return "".join(parts)
