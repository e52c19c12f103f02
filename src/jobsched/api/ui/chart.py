"""The overview's activity chart: attempts per minute over the last hour, as SVG shapes.

Computed here and drawn by the template as an inline ``<svg>`` (attributes only, no
style attribute, no script), so it needs no chart library and no ``unsafe-inline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jobsched.storage.base import MinuteActivity

MINUTES = 60
WIDTH = 720
HEIGHT = 180
BOTTOM = 20  # room for the time labels
SERIES = ("started", "succeeded", "failed")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True, slots=True)
class ActivityChart:
    bars: list[Bar]
    labels: list[Label]
    peak: int
    totals: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM


def window_start(now: datetime) -> datetime:
    """The first minute the chart shows: 59 whole minutes before the current one."""
    return now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)


def activity_chart(activity: list[MinuteActivity], now: datetime) -> ActivityChart:
    start = window_start(now)
    by_minute = {item.minute.replace(second=0, microsecond=0): item for item in activity}
    minutes = [start + timedelta(minutes=index) for index in range(MINUTES)]
    values = [
        (moment, by_minute.get(moment) or MinuteActivity(moment, 0, 0, 0)) for moment in minutes
    ]
    peak = max([1, *(max(v.started, v.succeeded, v.failed) for _, v in values)])
    slot = WIDTH / MINUTES
    bar_width = slot / (len(SERIES) + 1)
    drawable = HEIGHT - BOTTOM - 4
    bars: list[Bar] = []
    for index, (moment, value) in enumerate(values):
        counts = (value.started, value.succeeded, value.failed)
        for position, (series, count) in enumerate(zip(SERIES, counts, strict=True)):
            if count == 0:
                continue
            height = max(1.0, drawable * count / peak)
            bars.append(
                Bar(
                    x=round(index * slot + position * bar_width, 2),
                    y=round(HEIGHT - BOTTOM - height, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    series=series,
                    title=f"{moment:%H:%M} UTC: {count} {series}",
                )
            )
    labels = [
        Label(x=round(index * slot, 2), text=f"{minutes[index]:%H:%M}")
        for index in range(0, MINUTES, 10)
    ]
    totals = {
        "started": sum(v.started for _, v in values),
        "succeeded": sum(v.succeeded for _, v in values),
        "failed": sum(v.failed for _, v in values),
    }
    return ActivityChart(bars=bars, labels=labels, peak=peak, totals=totals)
