"""The overview's chart: an hour of minutes, bars scaled to the busiest, idle minutes empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobsched.api.ui.chart import BOTTOM, HEIGHT, activity_chart, window_start
from jobsched.storage.base import MinuteActivity

NOW = datetime(2031, 1, 1, 12, 30, 15, tzinfo=UTC)


def test_bars_are_scaled_to_the_peak_and_placed_by_minute() -> None:
    start = window_start(NOW)
    assert start == datetime(2031, 1, 1, 11, 31, tzinfo=UTC)
    activity = [
        MinuteActivity(start, started=4, succeeded=2, failed=0),
        MinuteActivity(start + timedelta(minutes=59), started=1, succeeded=0, failed=1),
        MinuteActivity(start - timedelta(minutes=1), started=50, succeeded=0, failed=0),
    ]
    chart = activity_chart(activity, NOW)
    assert chart.peak == 4, "a minute outside the window does not count"
    assert chart.totals == {"started": 5, "succeeded": 2, "failed": 1}
    assert [bar.series for bar in chart.bars] == ["started", "succeeded", "started", "failed"]
    tallest = chart.bars[0]
    assert tallest.x == 0
    assert tallest.y + tallest.height == HEIGHT - BOTTOM
    assert chart.bars[1].height == tallest.height / 2
    assert chart.bars[2].x > chart.bars[1].x
    assert chart.bars[3].title == "12:30 UTC: 1 failed"
    assert [label.text for label in chart.labels] == [
        "11:31",
        "11:41",
        "11:51",
        "12:01",
        "12:11",
        "12:21",
    ]


def test_an_idle_hour_draws_no_bars() -> None:
    chart = activity_chart([], NOW)
    assert chart.bars == []
    assert chart.peak == 1
