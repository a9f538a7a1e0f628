"""Small server-rendered SVG charts for the admin's usage pages: no script, nothing from the
internet. Each function returns SVG markup with every label escaped; colours and text follow
the admin's CSS variables (light and dark themes), and each bar or point has a `<title>`
tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 60, 34, 14, 34  # room for the axis labels
# Colour-blind-friendly (Okabe-Ito); the last is for "other".
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")
OTHER_COLOUR = "#999999"


@dataclass(frozen=True)
class Series:
    """One named row of values, one per time bucket (None: no value, a gap in a line)."""

    label: str
    values: Sequence[float | None]
    colour: str


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def axis(largest: float, *, whole: bool = False) -> tuple[float, float]:
    """(top, step) of a y axis showing `largest`: at most 5 steps of 1, 2, 2.5 or 5 times 10^n;
    `whole`: whole-number steps only (counts: no 0.2 request)."""
    if largest <= 0:
        return (1, 1) if whole else (1, 0.25)
    power = 10 ** (math.floor(math.log10(largest)) - 1)
    for scale in (1, 10, 100):
        for base in (1, 2, 2.5, 5):
            step = base * power * scale
            if whole and (step < 1 or step != int(step)):
                continue
            if largest / step <= 5:
                return math.ceil(largest / step - 1e-9) * step, step
    return largest, largest  # not reached


def short_number(value: float) -> str:
    """12, 3.4k, 1.2M: axis labels and tooltips."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            text = f"{value / size:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}"


def time_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    kind: str = "bars",
    tick_every: int | None = None,
    whole: bool = False,
) -> str:
    """Values over time: stacked bars (`kind="bars"`) or lines (`kind="lines"`).

    `labels` names each time bucket (tooltips, and every `tick_every`-th one on the x axis).
    """
    count = len(labels)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if kind == "bars":
        tops = [sum(s.values[i] or 0 for s in series) for i in range(count)]
    else:
        tops = [max((s.values[i] or 0 for s in series), default=0) for i in range(count)]
    top, step = axis(max(tops, default=0), whole=whole)
    slot = plot_width / max(count, 1)

    def y(value: float) -> float:
        return TOP + plot_height - value / top * plot_height

    parts = [
        f'<svg class="cm-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    for index in range(round(top / step) + 1):  # gridlines and y labels
        value = index * step
        line_y = y(value)
        parts.append(
            f'<line class="cm-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
            f' y1="{line_y:.1f}" y2="{line_y:.1f}"/>'
            f'<text class="cm-axis" x="{LEFT - 6}" y="{line_y + 4:.1f}"'
            f' text-anchor="end">{escape(short_number(value))}</text>'
        )
    every = tick_every or max(1, math.ceil(count / 6))
    for index in range(0, count, every):  # x labels
        x = LEFT + slot * (index + 0.5)
        parts.append(
            f'<text class="cm-axis" x="{x:.1f}" y="{HEIGHT - BOTTOM + 20}"'
            f' text-anchor="middle">{escape(labels[index])}</text>'
        )
    if kind == "bars":
        parts.extend(_bars(labels, series, slot=slot, y=y, unit=unit))
    else:
        parts.extend(_lines(labels, series, slot=slot, y=y, unit=unit))
    parts.append(
        f'<line class="cm-baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
        f' y1="{TOP + plot_height}" y2="{TOP + plot_height}"/>'
    )
    if not any(any(s.values) for s in series):  # nothing, or only zeros and gaps
        parts.append(
            f'<text class="cm-empty" x="{LEFT + plot_width / 2:.1f}"'
            f' y="{TOP + plot_height / 2:.1f}" text-anchor="middle">nothing in this range</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _tooltip(label: str, series: Series, value: float, unit: str) -> str:
    return escape(f"{label} · {series.label}: {short_number(value)}{unit}")


def _bars(labels, series, *, slot, y, unit) -> list[str]:
    width = max(slot * 0.78, 1.0)
    parts = []
    for index, label in enumerate(labels):
        x = LEFT + slot * index + (slot - width) / 2
        base = 0.0
        for one in series:
            value = one.values[index]
            if not value:
                continue
            top_y, bottom_y = y(base + value), y(base)
            parts.append(
                f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{width:.1f}"'
                f' height="{max(bottom_y - top_y, 0.5):.1f}" fill="{one.colour}">'
                f"<title>{_tooltip(label, one, value, unit)}</title></rect>"
            )
            base += value
    return parts


def _lines(labels, series, *, slot, y, unit) -> list[str]:
    parts = []
    for one in series:
        runs: list[list[str]] = [[]]  # unbroken stretches of values; None breaks the line
        for index, (label, value) in enumerate(zip(labels, one.values, strict=True)):
            if value is None:
                runs.append([])
                continue
            x, py = LEFT + slot * (index + 0.5), y(value)
            runs[-1].append(f"{x:.1f},{py:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{py:.1f}" r="3" fill="{one.colour}">'
                f"<title>{_tooltip(label, one, value, unit)}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.insert(
                    0,
                    f'<polyline fill="none" stroke="{one.colour}" stroke-width="2.5"'
                    f' points="{" ".join(run)}"/>',
                )
    return parts


def legend(series: Sequence[Series]) -> str:
    """The colour key of a chart, as HTML."""
    items = "".join(
        f'<li><span class="cm-swatch" style="background:{s.colour}"></span>{escape(s.label)}</li>'
        for s in series
    )
    return f'<ul class="cm-legend">{items}</ul>'
