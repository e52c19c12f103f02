"""Property tests for schedules.

Cron expressions are generated from field components together with the set of
values each field means, so the checks below (a field-set matcher and a
minute-by-minute oracle) rely neither on cronsim nor on jobsched's parser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules import (
    CronSchedule,
    IntervalSchedule,
    Schedule,
    parse_schedule,
    preview_fire_times,
)

ZONE_NAMES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
DST_ZONE_NAMES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
LONGEST_MONTH_DAYS = dict(enumerate([31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], start=1))
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class FieldRange:
    low: int
    high: int
    step_limit: int
    names: tuple[str, ...] = ()  # names[i] is the name of value low + i


SECOND = FieldRange(0, 59, 60)
MINUTE = FieldRange(0, 59, 60)
HOUR = FieldRange(0, 23, 24)
DAY_OF_MONTH = FieldRange(1, 31, 31)
MONTH = FieldRange(1, 12, 12, tuple(MONTH_NAMES))
DAY_OF_WEEK = FieldRange(0, 7, 7, tuple(WEEKDAY_NAMES))


@dataclass(frozen=True)
class GeneratedField:
    text: str
    values: frozenset[int]


@dataclass(frozen=True)
class GeneratedCron:
    second: GeneratedField | None
    minute: GeneratedField
    hour: GeneratedField
    day_of_month: GeneratedField
    month: GeneratedField
    day_of_week: GeneratedField

    @property
    def expression(self) -> str:
        fields = [self.minute, self.hour, self.day_of_month, self.month, self.day_of_week]
        if self.second is not None:
            fields.insert(0, self.second)
        return " ".join(field.text for field in fields)

    @property
    def days_match_either(self) -> bool:
        return not self.day_of_month.text.startswith("*") and not (
            self.day_of_week.text.startswith("*")
        )

    @property
    def fixed_time(self) -> bool:
        return not self.minute.text.startswith("*") and not self.hour.text.startswith("*")

    @property
    def never_fires(self) -> bool:
        longest = max(LONGEST_MONTH_DAYS[month] for month in self.month.values)
        return not self.days_match_either and min(self.day_of_month.values) > longest

    def matches(self, wall: datetime) -> bool:
        seconds = {0} if self.second is None else self.second.values
        if wall.second not in seconds or wall.minute not in self.minute.values:
            return False
        if wall.hour not in self.hour.values or wall.month not in self.month.values:
            return False
        day_of_month_matches = wall.day in self.day_of_month.values
        day_of_week_matches = wall.isoweekday() % 7 in {v % 7 for v in self.day_of_week.values}
        if self.days_match_either:
            return day_of_month_matches or day_of_week_matches
        return day_of_month_matches and day_of_week_matches


@st.composite
def value_texts(draw: st.DrawFn, field: FieldRange, value: int) -> str:
    index = value - field.low
    if index < len(field.names) and draw(st.booleans()):
        name = field.names[index]
        return draw(st.sampled_from([name, name.lower(), name.title()]))
    return str(value)


@st.composite
def cron_terms(draw: st.DrawFn, field: FieldRange) -> GeneratedField:
    every_value = range(field.low, field.high + 1)
    kind = draw(st.sampled_from(["star", "star/step", "value", "range", "range/step", "v/step"]))
    if kind == "star":
        return GeneratedField("*", frozenset(every_value))
    step = draw(st.integers(1, field.step_limit)) if kind.endswith("step") else 1
    if kind == "star/step":
        chosen = {v for v in every_value if (v - field.low) % step == 0}
        return GeneratedField(f"*/{step}", frozenset(chosen))
    first = draw(st.integers(field.low, field.high))
    first_text = draw(value_texts(field, first))
    if kind == "value":
        return GeneratedField(first_text, frozenset({first}))
    if kind == "v/step":
        chosen = {v for v in every_value if v >= first and (v - first) % step == 0}
        return GeneratedField(f"{first_text}/{step}", frozenset(chosen))
    last = draw(st.integers(first, field.high))
    text = f"{first_text}-{draw(value_texts(field, last))}"
    if kind == "range":
        return GeneratedField(text, frozenset(range(first, last + 1)))
    chosen = {v for v in every_value if first <= v <= last and (v - first) % step == 0}
    return GeneratedField(f"{text}/{step}", frozenset(chosen))


@st.composite
def cron_fields(draw: st.DrawFn, field: FieldRange) -> GeneratedField:
    terms = draw(st.lists(cron_terms(field), min_size=1, max_size=3))
    values: set[int] = set()
    for term in terms:
        values |= term.values
    return GeneratedField(",".join(term.text for term in terms), frozenset(values))


def star(field: FieldRange) -> GeneratedField:
    return GeneratedField("*", frozenset(range(field.low, field.high + 1)))


@st.composite
def early_hour_fields(draw: st.DrawFn) -> GeneratedField:
    """Hour fields that select hours near the small-hours clock changes of the test zones."""
    if draw(st.booleans()):
        step = draw(st.integers(1, 6))
        return GeneratedField(f"*/{step}", frozenset(range(0, 24, step)))
    hours = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    return GeneratedField(",".join(map(str, hours)), frozenset(hours))


@st.composite
def cron_expressions(
    draw: st.DrawFn, *, any_days: bool = True, seconds: bool = True, early_hours: bool = False
) -> GeneratedCron:
    with_seconds = seconds and draw(st.booleans())
    hour_strategy = cron_fields(HOUR)
    if early_hours:
        hour_strategy = st.one_of(hour_strategy, early_hour_fields())

    def day_field(field: FieldRange) -> GeneratedField:
        return draw(cron_fields(field)) if any_days else star(field)

    return GeneratedCron(
        second=draw(cron_fields(SECOND)) if with_seconds else None,
        minute=draw(cron_fields(MINUTE)),
        hour=draw(hour_strategy),
        day_of_month=day_field(DAY_OF_MONTH),
        month=day_field(MONTH),
        day_of_week=day_field(DAY_OF_WEEK),
    )


instants_2000_to_2040 = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2040, 12, 31),
    timezones=st.sampled_from([ZoneInfo(name) for name in ZONE_NAMES]),
)


def seconds_offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def is_shifted_out_of_a_gap(fire: datetime, cron: GeneratedCron, zone: ZoneInfo) -> bool:
    """The documented fixed-time rule: a matching wall time inside a spring-forward gap
    fires at the first instant after the gap."""
    just_before = fire - timedelta(seconds=1)
    if seconds_offset(just_before, zone) >= seconds_offset(fire, zone):
        return False
    skipped = just_before.astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1)
    gap_end = fire.astimezone(zone).replace(tzinfo=None)
    while skipped < gap_end:
        if cron.matches(skipped):
            return True
        skipped += timedelta(seconds=1)
    return False


def is_second_occurrence(fire: datetime, zone: ZoneInfo) -> bool:
    return fire.astimezone(zone).fold == 1


@PROPERTY_SETTINGS
@given(cron=cron_expressions(), zone_name=st.sampled_from(ZONE_NAMES), after=instants_2000_to_2040)
def test_cron_fire_times_increase_and_match_the_expression(
    cron: GeneratedCron, zone_name: str, after: datetime
) -> None:
    if cron.never_fires:
        with pytest.raises(InvalidScheduleError) as raised:
            parse_schedule(cron.expression, zone_name)
        assert raised.value.field == "schedule"
        return
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(cron.expression, zone_name)
    fires = preview_fire_times(schedule, after, 5)

    assert len(fires) == 5
    assert fires[0] > after
    assert all(earlier < later for earlier, later in pairwise(fires))
    for fire in fires:
        assert fire.tzinfo is UTC
        if cron.fixed_time:
            assert not is_second_occurrence(fire, zone), fire
            wall = fire.astimezone(zone).replace(tzinfo=None)
            assert cron.matches(wall) or is_shifted_out_of_a_gap(fire, cron, zone), fire
        else:
            assert cron.matches(fire.astimezone(zone).replace(tzinfo=None)), fire


@PROPERTY_SETTINGS
@given(
    cron=cron_expressions(),
    zone_name=st.sampled_from(ZONE_NAMES),
    after=instants_2000_to_2040,
    fraction_millionths=st.integers(0, 999_999),
)
def test_any_instant_before_the_next_fire_leads_to_that_same_fire(
    cron: GeneratedCron, zone_name: str, after: datetime, fraction_millionths: int
) -> None:
    if cron.never_fires:
        return
    schedule = parse_schedule(cron.expression, zone_name)
    first = schedule.next_fire_after(after)
    assert first is not None
    after_utc = after.astimezone(UTC)  # so that adding a timedelta adds elapsed time
    between = after_utc + (first - after_utc) * fraction_millionths // 1_000_000

    assert schedule.next_fire_after(between) == first


@PROPERTY_SETTINGS
@given(cron=cron_expressions())
def test_cronsim_reads_the_canonical_expression_as_the_generator_means_it(
    cron: GeneratedCron,
) -> None:
    if cron.never_fires:
        return
    schedule = parse_schedule(cron.expression)
    assert isinstance(schedule, CronSchedule)
    reader = CronSim(schedule.fields.cronsim_expression, datetime(2001, 1, 1))

    assert reader.seconds == ({0} if cron.second is None else cron.second.values)
    assert reader.minutes == cron.minute.values
    assert reader.hours == cron.hour.values
    assert reader.days == cron.day_of_month.values
    assert reader.months == cron.month.values
    assert all(isinstance(v, int) for v in reader.weekdays)  # no 'L' or '#' tuples
    weekdays = {v % 7 for v in reader.weekdays if isinstance(v, int)}
    assert weekdays == {v % 7 for v in cron.day_of_week.values}
    assert reader.day_and == (not cron.days_match_either)


@functools.cache
def clock_changes(zone_name: str, year: int) -> tuple[datetime, ...]:
    """Instants (UTC, whole minutes) at which the zone's UTC offset changes in ``year``."""
    zone = ZoneInfo(zone_name)
    changes = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        following = probe + timedelta(hours=6)
        if seconds_offset(probe, zone) != seconds_offset(following, zone):
            minute = probe
            while seconds_offset(minute, zone) == seconds_offset(probe, zone):
                minute += timedelta(minutes=1)
            changes.append(minute)
        probe = following
    return tuple(changes)


def expected_minute_fires(
    cron: GeneratedCron, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Brute force over every UTC minute in (start, end]: Debian cron's rules, restated."""
    fires = []
    minute = start + timedelta(minutes=1)
    while minute <= end:
        local = minute.astimezone(zone)
        matches = cron.matches(local.replace(tzinfo=None))
        if not cron.fixed_time:
            fires += [minute] if matches else []
        elif (matches and local.fold == 0) or skipped_wall_time_matches(cron, zone, minute):
            fires.append(minute)
        minute += timedelta(minutes=1)
    return fires


def skipped_wall_time_matches(cron: GeneratedCron, zone: ZoneInfo, minute: datetime) -> bool:
    previous = (minute - timedelta(minutes=1)).astimezone(zone)
    local = minute.astimezone(zone)
    if seconds_offset(previous, zone) >= seconds_offset(local, zone):
        return False
    skipped = previous.replace(tzinfo=None) + timedelta(minutes=1)
    while skipped < local.replace(tzinfo=None):
        if cron.matches(skipped):
            return True
        skipped += timedelta(minutes=1)
    return False


@st.composite
def clock_changes_in_2024_and_2025(draw: st.DrawFn) -> tuple[str, datetime]:
    zone_name = draw(st.sampled_from(DST_ZONE_NAMES))
    return zone_name, draw(
        st.sampled_from(clock_changes(zone_name, draw(st.sampled_from([2024, 2025]))))
    )


@settings(max_examples=200, deadline=None)
@given(
    cron=cron_expressions(any_days=False, seconds=False, early_hours=True),
    zone_and_change=clock_changes_in_2024_and_2025(),
    window_shift_minutes=st.integers(-90, 90),
    probe_shifts_seconds=st.lists(st.integers(-90 * 60, 90 * 60), max_size=5),
)
def test_fires_around_clock_changes_are_exactly_the_brute_force_ones(
    cron: GeneratedCron,
    zone_and_change: tuple[str, datetime],
    window_shift_minutes: int,
    probe_shifts_seconds: list[int],
) -> None:
    zone_name, change = zone_and_change
    zone = ZoneInfo(zone_name)
    centre = change + timedelta(minutes=window_shift_minutes)
    start, end = centre - timedelta(hours=3), centre + timedelta(hours=3)
    schedule = parse_schedule(cron.expression, zone_name)
    expected = expected_minute_fires(cron, zone, start, end)
    fires = []
    cursor = schedule.next_fire_after(start)
    while cursor is not None and cursor <= end:
        fires.append(cursor)
        cursor = schedule.next_fire_after(cursor)

    assert fires == expected
    # A scheduler restarting at any instant near the change agrees with the oracle too.
    for shift_seconds in probe_shifts_seconds:
        probe = change + timedelta(seconds=shift_seconds, microseconds=shift_seconds % 7)
        assert_next_fire_matches_oracle(schedule, probe, expected, end)


def assert_next_fire_matches_oracle(
    schedule: Schedule, probe: datetime, expected: list[datetime], end: datetime
) -> None:
    following = schedule.next_fire_after(probe)
    assert following is not None
    later_expected = [fire for fire in expected if fire > probe]
    if later_expected:
        assert following == later_expected[0], probe
    else:
        assert following > end, probe


@PROPERTY_SETTINGS
@given(
    every_seconds=st.integers(1, 400 * 86_400),
    anchor=instants_2000_to_2040,
    after=instants_2000_to_2040,
)
def test_interval_fires_on_the_anchor_grid_strictly_after(
    every_seconds: int, anchor: datetime, after: datetime
) -> None:
    every = timedelta(seconds=every_seconds)
    # Elapsed-time arithmetic must happen in UTC: adding a timedelta to an aware
    # datetime in a DST zone adds wall time.
    first_fire = anchor.astimezone(UTC) + every
    schedule = parse_schedule(f"@every {every_seconds}s", "Europe/Berlin", anchor=anchor)
    assert isinstance(schedule, IntervalSchedule)
    fire = schedule.next_fire_after(after)

    assert fire is not None
    assert fire.tzinfo is UTC
    assert fire > after
    assert fire >= first_fire
    assert (fire - first_fire) % every == timedelta(0)
    assert fire - every <= after or fire == first_fire


@settings(max_examples=50, deadline=None)
@given(every_seconds=st.integers(1, 60), years_later=st.integers(100, 7000))
@pytest.mark.timeout(10)
def test_interval_is_arithmetic_even_after_billions_of_periods(
    every_seconds: int, years_later: int
) -> None:
    anchor = datetime(2000, 1, 1, tzinfo=UTC)
    schedule = parse_schedule(f"@every {every_seconds}s", anchor=anchor)
    after = anchor + timedelta(days=365 * years_later, microseconds=1)

    fire = schedule.next_fire_after(after)

    assert fire is not None
    assert timedelta(0) < fire - after <= timedelta(seconds=every_seconds)
