"""Cron schedules: which wall-clock times fire, and which instants those are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from jobsched.schedules.base import ensure_aware
from jobsched.schedules.cron_fields import CronFields
from jobsched.schedules.wall_clock import (
    end_of_gap,
    instants_of_wall_time,
    repeated_period,
    wall_time_of,
)

_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read on the wall clock of ``timezone``.

    Build one with ``parse_schedule``. Wall times that match the fields are
    found with cronsim, used purely as a calendar on naive wall times; which
    instants they become when clocks change follows Debian cron:

    * **Fixed-time jobs** - neither the minute nor the hour field starts with
      ``*`` (``30 2 * * *``, ``0 9-17 * * 1-5``, ``@daily``): a matching wall
      time skipped by a spring-forward change fires once, at the first instant
      after the gap (03:00 local for 02:30 in Europe/Berlin); several skipped
      wall times collapse into that one fire. A matching wall time that occurs
      twice when clocks fall back fires only at its first occurrence.
    * **Elapsed-time jobs** - the minute or hour field starts with ``*``
      (``*/15 * * * *``, ``0 * * * *``, ``@hourly``): they fire at every
      instant whose wall time matches, so wall times in a gap do not fire and
      repeated ones fire on both occurrences; ``0 * * * *`` fires 23 times on
      a spring-forward day and 25 on a fall-back day.

    Both rules apply to 5- and 6-field expressions alike. (cronsim applies
    its own Debian emulation only to 5-field expressions, and in aware mode
    misses fires in zones with 30-minute changes, so neither is relied on.)
    """

    expression: str
    timezone: ZoneInfo
    fields: CronFields

    @property
    def fires_at_fixed_local_times(self) -> bool:
        """True when the fixed-time DST rule applies, False for the elapsed-time rule."""
        return not self.fields.minute_or_hour_is_wildcard

    def next_fire_after(self, after: datetime) -> datetime | None:
        """First fire time strictly after ``after``; see ``Schedule.next_fire_after``."""
        ensure_aware(after, "after")
        try:
            after_utc = after.astimezone(UTC)
            if self.fires_at_fixed_local_times:
                return self._next_fixed_time_fire(after_utc)
            return self._next_elapsed_time_fire(after_utc)
        except OverflowError:  # the next fire would fall after year 9999
            return None

    def _next_fixed_time_fire(self, after: datetime) -> datetime | None:
        local_after = after.astimezone(self.timezone)
        search_from = local_after.replace(tzinfo=None)
        if local_after.fold == 1:
            # `after` is in the second pass of a repeated period: every
            # matching wall time left in it already fired in the first pass.
            _, period_end = repeated_period(search_from, self.timezone)
            search_from = period_end - _ONE_SECOND
        wall = self._next_matching_wall_time(search_from)
        if wall is None:
            return None
        instants = instants_of_wall_time(wall, self.timezone)
        return instants[0] if instants else end_of_gap(wall, self.timezone)

    def _next_elapsed_time_fire(self, after: datetime) -> datetime | None:
        local_after = after.astimezone(self.timezone)
        wall_after = local_after.replace(tzinfo=None)
        following = self._first_real_instant_matching_after(wall_after, after)
        if local_after.fold == 1 or len(instants_of_wall_time(wall_after, self.timezone)) < 2:
            return following
        # `after` is in the first pass of a repeated period, so matching wall
        # times at or before its own will come round again in the second pass.
        period_start, period_end = repeated_period(wall_after, self.timezone)
        repeated = self._next_matching_wall_time(period_start - _ONE_SECOND)
        if repeated is None or repeated >= period_end:
            return following
        second_pass = instants_of_wall_time(repeated, self.timezone)[1]
        return second_pass if following is None else min(following, second_pass)

    def _first_real_instant_matching_after(
        self, wall_after: datetime, after: datetime
    ) -> datetime | None:
        """Among matching wall times later than ``wall_after``, the first instant after ``after``.

        Wall times in a gap name no instant and are skipped; a repeated wall
        time offers its first occurrence, or its second if the first is past.
        """
        search_from = wall_after
        while (wall := self._next_matching_wall_time(search_from)) is not None:
            instants = instants_of_wall_time(wall, self.timezone)
            later = [instant for instant in instants if instant > after]
            if later:
                return later[0]
            search_from = wall
            if not instants:  # a gap: resume from its end instead of stepping through it
                search_from = wall_time_of(end_of_gap(wall, self.timezone), self.timezone)
                search_from -= _ONE_SECOND
        return None

    def _next_matching_wall_time(self, wall_after: datetime) -> datetime | None:
        """The first wall time strictly after ``wall_after`` (naive) that matches the fields."""
        try:
            return next(CronSim(self.fields.cronsim_expression, wall_after))
        except StopIteration:  # cronsim gives up after 50 years without a match
            return None
