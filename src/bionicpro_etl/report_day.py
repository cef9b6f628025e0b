"""Which calendar day a run builds, and where that day starts and ends.

A report day is [00:00, 24:00) of the report time zone (contract section 6). A run's day comes
from its logical date, never from the wall clock, so re-running an old run rebuilds the same day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The days the mart can hold: ClickHouse's Date. An event dated outside them (a device's broken
# clock: 1960, 2200, infinity) never becomes a row; a CRM date outside them is a reject.
FIRST_DATE = date(1970, 1, 1)
LAST_DATE = date(2149, 6, 6)


def report_day_of(logical_date: datetime, tz: ZoneInfo) -> date:
    """The report day a run with this logical date builds.

    The scheduled run that fires at 02:00 on day D+1 has the logical date D 02:00 (the start of
    its data interval), so it builds D, the day that just ended. `airflow dags test ... D` has the
    logical date D 00:00 in Airflow's default time zone, which is D in the report zone whenever
    that zone is not west of it.
    """
    if logical_date.tzinfo is None:
        raise ValueError("a logical date must carry its time zone")
    return logical_date.astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants, in UTC, where the report day begins and the next one begins: 23 or 25 hours
    apart on a daylight-saving change (arithmetic on zone-local datetimes would say 24)."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def storable_bounds(tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants whose report day the mart can hold: [start of FIRST_DATE, end of LAST_DATE)."""
    return day_bounds(FIRST_DATE, tz)[0], day_bounds(LAST_DATE, tz)[1]
