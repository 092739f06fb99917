"""Inline SVG figures for the report page: no script, no external asset, every value escaped.

Each bar group carries a ``<title>``, so a browser shows its numbers on hover and a
screen reader reads them, without JavaScript. Long windows are binned so that a
figure never holds more than ``most`` bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

MINUTE = "%Y-%m-%dT%H:%MZ"
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)  # minutes a bin may span


@dataclass(frozen=True)
class Grid:
    """Bins of ``step`` minutes from ``first``: the time axis every figure on a page shares."""

    first: datetime
    step: int
    count: int

    def index(self, minute: str) -> int | None:
        offset = int((datetime.strptime(minute, MINUTE) - self.first).total_seconds() // 60) // self.step
        return offset if 0 <= offset < self.count else None

    def start(self, index: int) -> datetime:
        return self.first + timedelta(minutes=index * self.step)

    def label(self, index: int) -> str:
        moment = self.start(index)
        days = self.step * self.count > 1440
        return moment.strftime("%d %b %H:%M" if days else "%H:%M")

    def bin(self, series: dict[str, int]) -> list[int]:
        values = [0] * self.count
        for minute, n in series.items():
            if (at := self.index(minute)) is not None:
                values[at] += n
        return values


def grid(minutes: list[str], most: int = 120) -> Grid | None:
    """The grid over the first to the last minute with events; None when there are none."""
    if not minutes:
        return None
    first, last = (datetime.strptime(m, MINUTE) for m in (min(minutes), max(minutes)))
    span = int((last - first).total_seconds() // 60) + 1
    step = next((s for s in STEPS if math.ceil(span / s) + 1 <= most), math.ceil(span / most / 1440) * 1440)
    day = first.replace(hour=0, minute=0)
    first -= timedelta(minutes=int((first - day).total_seconds() // 60) % step)  # bins start on round times
    return Grid(first, step, int((last - first).total_seconds() // 60) // step + 1)


def nice_ceiling(value: int) -> int:
    """The next 1, 2 or 5 times a power of ten at or above ``value``: a y axis people read at a glance."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def stacked(grid: Grid, series: dict[str, dict[str, int]], order: list[str], colors: dict[str, str], unit: str) -> str:
    """Events per bin, stacked by reason in ``order``, with a y axis and unique time labels."""
    width, height, left, bottom, top = 1100, 240, 52, 26, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    per_reason = {r: grid.bin({m: v.get(r, 0) for m, v in series.items()}) for r in order}
    totals = [sum(per_reason[r][i] for r in order) for i in range(grid.count)]
    ceiling = nice_ceiling(max(totals, default=1))
    slot = plot_w / grid.count
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="send errors {escape(unit)}, stacked by reason">'
    ]
    for tick in range(5):
        value = ceiling * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    for i in range(grid.count):
        if not totals[i]:
            continue
        mix = ", ".join(f"{r} {per_reason[r][i]:,}" for r in order if per_reason[r][i])
        parts.append(f"<g><title>{escape(grid.label(i))} UTC: {totals[i]:,} events ({escape(mix)})</title>")
        y = top + plot_h
        for reason in order:
            n = per_reason[reason][i]
            if n:
                h = plot_h * n / ceiling
                y -= h
                x = left + i * slot
                parts.append(
                    f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(slot - 1, 0.8):.1f}" height="{h:.1f}" '
                    f'fill="{colors[reason]}"/>'
                )
        parts.append("</g>")
    every = max(1, math.ceil(grid.count / 11))
    for i in range(0, grid.count, every):
        x = left + i * slot
        parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}"/>')
        parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="middle">{grid.label(i)}</text>')
    parts.append(f'<line class="base" x1="{left}" x2="{width - 8}" y1="{top + plot_h}" y2="{top + plot_h}"/></svg>')
    return "".join(parts)


def sparkline(grid: Grid, series: dict[str, int], caption: str) -> str:
    """One server's events per bin as small bars on the page's shared axis; its highest bin stands out."""
    width, height = 220, 34
    values = grid.bin(series)
    peak = max(values, default=0)
    slot = width / grid.count
    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" role="img"><title>{escape(caption)}</title>']
    parts.append(f'<line class="base" x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}"/>')
    for i, n in enumerate(values):
        if n:
            h = max((height - 2) * n / peak, 1.0)
            kind = "peak" if n == peak else "bar"
            parts.append(
                f'<rect class="{kind}" x="{i * slot:.2f}" y="{height - h:.2f}" '
                f'width="{max(slot - 0.6, 0.6):.2f}" height="{h:.2f}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def mix_bar(reasons: dict[str, int], colors: dict[str, str]) -> str:
    """A server's reasons as one stacked horizontal bar."""
    width, height = 160, 10
    total = sum(reasons.values()) or 1
    parts = [f'<svg class="mix" viewBox="0 0 {width} {height}" aria-hidden="true">']
    x = 0.0
    for reason, n in reasons.items():
        w = width * n / total
        parts.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{colors[reason]}"/>')
        x += w
    parts.append("</svg>")
    return "".join(parts)
