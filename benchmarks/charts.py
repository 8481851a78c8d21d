"""Inline SVG charts for the HTML report: a line chart (small multiples) and a dot-and-whisker
ratio chart, plus the palette and tick rules they share.

Every chart is one ``<svg>`` string with no external reference. Each series' elements carry
``data-series="<label>"`` so the page's legend can hide them, and every mark that stands for a
number has a ``<title>`` child, which browsers show on hover (tooltips without script).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "OKABE_ITO",
    "Line",
    "RatioRow",
    "line_chart",
    "log_ticks",
    "nice_ticks",
    "palette",
    "ratio_chart",
    "round_ticks",
]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
"""Okabe and Ito's colour-blind-safe set, reordered so the pale yellow (weak on white) comes
last."""


def _oklch_to_hex(lightness: float, chroma: float, hue_degrees: float) -> str:
    """OKLCH to an sRGB hex colour (channels clipped to the gamut)."""
    hue = math.radians(hue_degrees)
    a, b = chroma * math.cos(hue), chroma * math.sin(hue)
    l_ = (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3
    m_ = (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3
    s_ = (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3
    linear = (
        4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_,
        -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_,
        -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_,
    )

    def encode(channel: float) -> int:
        channel = min(max(channel, 0.0), 1.0)
        srgb = 12.92 * channel if channel <= 0.0031308 else 1.055 * channel ** (1 / 2.4) - 0.055
        return round(srgb * 255)

    return "#" + "".join(f"{encode(c):02X}" for c in linear)


def palette(n: int) -> list[str]:
    """``n`` distinct colours: Okabe-Ito's colour-blind-safe set up to 8, else ``n`` hues spread
    evenly round the OKLCH circle at three alternating lightness levels (no set that large is
    colour-blind safe; the labels carry the identity). ``n`` <= 0 gives ``[]``."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[: max(n, 0)])
    levels = (0.52, 0.68, 0.42)
    # Consecutive series (neighbouring rows, a group's lines) take hues far apart round the
    # circle: a stride near the golden section, coprime with n so every hue is used once.
    stride = max(1, round(n * 0.382))
    while math.gcd(stride, n) != 1:
        stride += 1
    colors: list[str] = []
    for i in range(n):
        hue = 25.0 + 360.0 * (i * stride % n) / n
        color = _oklch_to_hex(levels[i % 3], 0.14, hue)
        # Rounding to 8 bits per channel could make two close hues equal: nudge until unique.
        nudge = 0.0
        while color in colors:
            nudge += 0.01
            color = _oklch_to_hex(levels[i % 3] + nudge, 0.14, hue)
        colors.append(color)
    return colors


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """At most ``most`` round (1-2-5) ticks from ``low`` to ``high``; ``[low]`` when they are
    equal."""
    if not high > low:
        return [low]
    raw = (high - low) / max(most - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(count)]


def log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between ``low`` and ``high`` (both > 0); 1-only ticks when a 1-2-5 set would
    give more than 10."""
    ticks: list[float] = []
    exponent = math.floor(math.log10(low))
    while exponent <= math.ceil(math.log10(high)):
        for m in (1, 2, 5):
            value = m * 10.0**exponent
            if low * 0.9999 <= value <= high * 1.0001:
                ticks.append(value)
        exponent += 1
    if len(ticks) > 10:
        ticks = [t for t in ticks if f"{t:g}".lstrip("0.").startswith("1")]
    return ticks


def round_ticks(rounds: int, most: int = 10) -> list[int]:
    """Round numbers (1-based) to label on an axis of ``rounds`` rounds: every round up to
    ``most``, else a 1-2-5 step so that no more than ``most`` show (1, then multiples of it)."""
    if rounds <= most:
        return list(range(1, rounds + 1))
    step = 1
    magnitude = 1
    while True:
        for m in (1, 2, 5):
            step = m * magnitude
            ticks = [1, *range(step, rounds + 1, step)]
            if len(ticks) <= most:
                return ticks if ticks[1] != 1 else ticks[1:]
        magnitude *= 10


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


@dataclass
class Line:
    """One series of a line chart: ``points`` in data units, a gap where a point is None;
    ``marks`` are ``(x, y, tooltip)`` dots."""

    label: str
    color: str
    points: Sequence[tuple[float, float] | None]
    marks: Sequence[tuple[float, float, str]] = field(default_factory=list)
    dashed: bool = False


class _Frame:
    """Scales and axes of one chart: linear x, linear or log y."""

    def __init__(
        self,
        size: tuple[int, int],
        margins: tuple[int, int, int, int],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        y_log: bool,
    ) -> None:
        self.width, self.height = size
        self.left, self.right, self.top, self.bottom = margins
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.y_log = y_log
        self.inner_w = self.width - self.left - self.right
        self.inner_h = self.height - self.top - self.bottom

    def sx(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * self.inner_w

    def sy(self, y: float) -> float:
        if self.y_log:
            low, high = math.log10(self.y0), math.log10(self.y1)
            value = math.log10(max(y, self.y0))
        else:
            low, high, value = self.y0, self.y1, y
        span = (high - low) or 1.0
        return self.top + self.inner_h - (value - low) / span * self.inner_h


def _open_svg(css_class: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
    ]


def line_chart(
    *,
    title: str,
    lines: Sequence[Line],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[tuple[float, str]],
    x_label: str,
    y_label: str,
    y_log: bool = False,
    css_class: str = "lines",
    size: tuple[int, int] = (440, 250),
) -> str:
    """A small line chart with no legend of its own (the page draws one per figure)."""
    width, height = size
    frame = _Frame(size, (58, 12, 24, 40), x_range, y_range, y_log)
    bottom = frame.top + frame.inner_h
    right = frame.left + frame.inner_w
    parts = _open_svg(css_class, title, width, height)
    parts.append(
        f'<text x="{frame.left}" y="15" class="ct">{_esc(title)}</text>'
        f'<rect x="{frame.left}" y="{frame.top}" width="{frame.inner_w}" '
        f'height="{frame.inner_h}" fill="none" stroke="#bbb"/>'
    )
    for x, label in x_ticks:
        px = _fmt(frame.sx(x))
        parts.append(
            f'<line x1="{px}" y1="{frame.top}" x2="{px}" y2="{bottom}" stroke="#eee"/>'
            f'<text x="{px}" y="{bottom + 14}" class="tk" text-anchor="middle">{_esc(label)}</text>'
        )
    for y, label in y_ticks:
        py = _fmt(frame.sy(y))
        parts.append(
            f'<line x1="{frame.left}" y1="{py}" x2="{right}" y2="{py}" stroke="#eee"/>'
            f'<text x="{frame.left - 5}" y="{frame.sy(y) + 4:.1f}" class="tk" '
            f'text-anchor="end">{_esc(label)}</text>'
        )
    parts.append(
        f'<text x="{frame.left + frame.inner_w / 2:.1f}" y="{height - 6}" class="al" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
        f'<text x="12" y="{frame.top + frame.inner_h / 2:.1f}" class="al" text-anchor="middle" '
        f'transform="rotate(-90 12 {frame.top + frame.inner_h / 2:.1f})">{_esc(y_label)}</text>'
    )
    for line in lines:
        parts.append(f'<g class="s" data-series="{_esc(line.label)}">')
        parts.append(f"<title>{_esc(line.label)}</title>")
        dash = ' stroke-dasharray="5,3"' if line.dashed else ""
        # A None point breaks the line (a round without an OK call), rather than bridging it.
        runs: list[list[tuple[float, float]]] = [[]]
        for point in line.points:
            if point is None:
                runs.append([])
            else:
                runs[-1].append(point)
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{_fmt(frame.sx(x))},{_fmt(frame.sy(y))}" for x, y in run)
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{line.color}" '
                    f'stroke-width="1.7"{dash}/>'
                )
        for x, y, tip in line.marks:
            parts.append(
                f'<circle cx="{_fmt(frame.sx(x))}" cy="{_fmt(frame.sy(y))}" r="2.6" '
                f'fill="{line.color}"><title>{_esc(tip)}</title></circle>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class RatioRow:
    """One variant in the ratio chart: median and min-max over rounds, and the A/A noise band
    (min, max) of its baseline when the run measured one."""

    label: str
    baseline: str
    color: str
    median: float
    low: float
    high: float
    rounds: int
    band: tuple[float, float] | None = None


def ratio_chart(rows: Sequence[RatioRow], title: str, width: int = 900) -> str:
    """Horizontal dot-and-whisker chart: one row per variant (grouped under its baseline), the
    median as a dot, min-max over rounds as a whisker, the baseline's A/A band shaded, and a
    dashed line at 1 (as fast as the baseline). ``rows`` must not be empty."""
    if not rows:
        raise ValueError("ratio_chart needs at least one row")
    row_h, header_h = 20, 20
    baselines = list(dict.fromkeys(row.baseline for row in rows))
    label_w = 14 + 7 * max(len(row.label) for row in rows)
    left, right, top, bottom = max(120, label_w), 150, 28, 42
    height = top + bottom + row_h * len(rows) + header_h * len(baselines)
    values = [v for row in rows for v in (row.low, row.high, *(row.band or ())) if v > 0]
    low = min(0.95, min(values, default=1.0))
    high = max(1.05, max(values, default=1.0))
    # A ratio spread over more than 3x (a noisy machine) reads better on a log axis: 0.5 and 2
    # sit equally far from 1, and one outlier no longer squeezes every median into a corner.
    log = high / low > 3.0
    if log:
        # Under a decade, 1-2-5 ticks would leave one or two labels: round linear steps instead.
        ticks = log_ticks(low, high) if high / low >= 10 else nice_ticks(low, high, 10)
        x_range = (math.log10(low) - 0.02, math.log10(high) + 0.02)
    else:
        pad = (high - low) * 0.04
        ticks = nice_ticks(low - pad, high + pad, 8)
        x_range = (low - pad, high + pad)
    frame = _Frame((width, height), (left, right, top, bottom), x_range, (0, 1), False)

    def sx(value: float) -> float:
        return frame.sx(math.log10(max(value, low)) if log else value)

    plot_bottom = height - bottom
    parts = _open_svg("ratio", title, width, height)
    parts.append(f'<text x="{left}" y="16" class="ct">{_esc(title)}</text>')
    for tick in ticks:
        px = _fmt(sx(tick))
        parts.append(
            f'<line x1="{px}" y1="{top}" x2="{px}" y2="{plot_bottom}" stroke="#eee"/>'
            f'<text x="{px}" y="{plot_bottom + 14}" class="tk" text-anchor="middle">'
            f"{tick:g}</text>"
        )
    one = _fmt(sx(1.0))
    parts.append(
        f'<line x1="{one}" y1="{top}" x2="{one}" y2="{plot_bottom}" stroke="#444" '
        'stroke-dasharray="4,3"/>'
        f'<text x="{left + frame.inner_w / 2:.1f}" y="{height - 8}" class="al" '
        f'text-anchor="middle">p50 / baseline p50 in the same round (1 = as fast; lower is '
        f"faster){'; log scale' if log else ''}</text>"
    )
    y = float(top)
    for baseline in baselines:
        parts.append(
            f'<text x="6" y="{y + 14:.1f}" class="bh">vs {_esc(baseline)}</text>'
            f'<line x1="6" y1="{y + header_h - 1:.1f}" x2="{width - 6}" '
            f'y2="{y + header_h - 1:.1f}" stroke="#ddd"/>'
        )
        y += header_h
        for row in (r for r in rows if r.baseline == baseline):
            mid = y + row_h / 2
            tip = (
                f"{row.label} vs {row.baseline}: median {row.median:.3f}, "
                f"min {row.low:.3f}, max {row.high:.3f} over {row.rounds} rounds"
            )
            parts.append(
                f'<g class="row" data-series="{_esc(row.label)}"><title>{_esc(tip)}</title>'
            )
            if row.band is not None:
                bx0, bx1 = sx(row.band[0]), sx(row.band[1])
                parts.append(
                    f'<rect class="band" x="{_fmt(bx0)}" y="{y + 1:.1f}" '
                    f'width="{max(bx1 - bx0, 1.0):.1f}" height="{row_h - 2}" fill="#d9d9d9"/>'
                )
            parts.append(
                f'<text x="{left - 8}" y="{mid + 4:.1f}" class="rl" text-anchor="end">'
                f"{_esc(row.label)}</text>"
                f'<line x1="{_fmt(sx(row.low))}" y1="{mid:.1f}" '
                f'x2="{_fmt(sx(row.high))}" y2="{mid:.1f}" stroke="{row.color}" '
                'stroke-width="2"/>'
            )
            for end in (row.low, row.high):
                parts.append(
                    f'<line x1="{_fmt(sx(end))}" y1="{mid - 4:.1f}" '
                    f'x2="{_fmt(sx(end))}" y2="{mid + 4:.1f}" stroke="{row.color}" '
                    'stroke-width="2"/>'
                )
            parts.append(
                f'<circle cx="{_fmt(sx(row.median))}" cy="{mid:.1f}" r="4.5" '
                f'fill="{row.color}" stroke="#fff"/>'
                f'<text x="{width - right + 10}" y="{mid + 4:.1f}" class="rv">'
                f"{row.median:.3f} ({row.low:.3f}-{row.high:.3f})</text></g>"
            )
            y += row_h
    parts.append("</svg>")
    return "".join(parts)
