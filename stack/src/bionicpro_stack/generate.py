"""A deterministic generator of realistic telemetry and CRM data for the embedded stack.

The same seed always gives the same rows, day by day (each day has its own random stream, so a
day's data does not depend on which range was asked for). It is vectorised with NumPy and
written with ADBC bulk ingest (COPY), so weeks of data for thousands of users take seconds.

Sizes are natural by default (about 50 events a prosthesis a day, a CRM that knows most users);
the benchmark asks for exact ones instead: `Fleet(prostheses=...)`, `telemetry_day(events=...)`,
`crm_items(items=...)` give exactly that many prostheses, events and CRM items, made the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import adbc_driver_postgresql.dbapi as adbc_pg
import numpy as np
import pyarrow as pa

from bionicpro_etl.report_day import day_bounds

ACTIONS = np.array(["grasp", "release", "flex", "rotate", "pinch", "Grasp", " FLEX ", "RELEASE"])
ACTION_WEIGHTS = np.array([0.34, 0.30, 0.18, 0.08, 0.06, 0.02, 0.01, 0.01])
# Share of use by local hour: quiet nights, a morning and an evening peak, some use near midnight.
HOUR_WEIGHTS = np.array(
    [1, 0.5, 0.3, 0.2, 0.2, 0.5, 2, 5, 8, 9, 9, 8, 7, 7, 7, 7, 8, 9, 9, 8, 6, 4, 3, 2], dtype=float
)
FIRST_NAMES = [
    "Ivan",
    "Olga",
    "Дмитрий",
    "Anna",
    "Sergei",
    "Мария",
    "Liam",
    "Zoë",
    "Chloé",
    "Jean-Luc",
]
LAST_NAMES = ["Petrov", "Ivanova", "O'Brien", "Smith", "Кузнецов", "Müller", "García", "Nguyễn"]
# An event reaches the database seconds after it happens, or (3 % of them, from prostheses that
# were offline) one to five days later; never later than this.
MAX_UPLOAD_DELAY = timedelta(days=6)
STATUSES = np.array(["active", "active", "active", "active", "active", "suspended", "cancelled"])


@dataclass(frozen=True)
class Fleet:
    """Who owns which prosthesis: users 1..users, about one in seven with a second prosthesis;
    or, given `prostheses`, exactly that many: one for each user, the rest to random users."""

    users: int
    seed: int = 42
    prostheses: int | None = None

    def __post_init__(self) -> None:
        if self.prostheses is not None and self.prostheses < self.users:
            raise ValueError("every user has a prosthesis: prostheses must be at least users")

    def table(self) -> pa.Table:
        rng = np.random.default_rng([self.seed, 0])
        user_ids = np.arange(1, self.users + 1, dtype=np.int64)
        if self.prostheses is None:
            more = user_ids[rng.random(self.users) < 0.15]
            numbers = np.concatenate([user_ids, 500_000 + more])
        else:
            extra = self.prostheses - self.users
            more = rng.choice(self.users, extra, replace=extra > self.users) + 1
            numbers = np.arange(1, self.prostheses + 1, dtype=np.int64)
        owners = np.concatenate([user_ids, more])
        order = np.argsort(owners, kind="stable")
        return pa.table(
            {
                "user_id": owners[order],
                "prosthesis_id": [f"PROT-{n:06d}" for n in numbers[order]],
            }
        )


def telemetry_day(
    fleet: Fleet,
    day: date,
    tz: ZoneInfo,
    as_of: datetime | None = None,
    after: datetime | None = None,
    *,
    events: int | None = None,
) -> pa.Table:
    """One report day of events: about 50 a prosthesis, or exactly `events` spread over the
    fleet at the same per-device rates. Rows whose upload would come after `as_of` have not
    arrived; with `after`, only the rows uploaded after it (and by `as_of`)."""
    rng = np.random.default_rng([fleet.seed, 1, day.toordinal()])
    devices = fleet.table()
    rate = np.random.default_rng([fleet.seed, 2]).lognormal(np.log(50), 0.45, devices.num_rows)
    counts = rng.poisson(rate) if events is None else rng.multinomial(events, rate / rate.sum())
    n = int(counts.sum())
    device = np.repeat(np.arange(devices.num_rows), counts)

    start, end = day_bounds(day, tz)
    day_seconds = (end - start).total_seconds()
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    offset = np.minimum(hour * 3600 + rng.random(n) * 3600, day_seconds - 1e-3)
    start_us = int(start.timestamp() * 1_000_000)
    event_us = start_us + (offset * 1_000_000).astype(np.int64)

    late = rng.random(n) < 0.03
    delay = rng.exponential(30, n) + late * rng.uniform(86_400, 5 * 86_400, n)
    delay = np.minimum(delay, MAX_UPLOAD_DELAY.total_seconds())
    received_us = event_us + (delay * 1_000_000).astype(np.int64)

    response = rng.lognormal(np.log(120), 0.5, n)
    response = _spoil(rng, response, missing=0.02, invalid=0.005, bad=-1.0)
    # Battery drains through the day from a per-device morning charge.
    battery = np.clip(
        100 - offset / day_seconds * rng.uniform(40, 80, n) + rng.normal(0, 2, n), 0, 100
    )
    battery = _spoil(rng, battery, missing=0.02, invalid=0.003, bad=103.5)
    duration = _spoil(rng, rng.exponential(240.0, n), missing=0.01, invalid=0.003, bad=-2.0)

    table = pa.table(
        {
            "user_id": devices["user_id"].take(device),
            "prosthesis_id": devices["prosthesis_id"].take(device),
            "event_time": pa.array(event_us, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(received_us, pa.timestamp("us", tz="UTC")),
            "action_type": pa.array(ACTIONS).take(
                rng.choice(len(ACTIONS), size=n, p=ACTION_WEIGHTS)
            ),
            "response_time_ms": response,
            "battery_level": battery,
            "duration_seconds": duration,
        }
    )
    arrived = np.ones(n, dtype=bool)
    if as_of is not None:
        arrived &= received_us <= int(as_of.timestamp() * 1_000_000)
    if after is not None:
        arrived &= received_us > int(after.timestamp() * 1_000_000)
    return table if arrived.all() else table.filter(pa.array(arrived))


def _spoil(
    rng: np.random.Generator, values: np.ndarray, *, missing: float, invalid: float, bad: float
) -> pa.Array:
    """A few measurements missing (null) and a few out of range, as real devices send."""
    roll = rng.random(len(values))
    values = np.where(roll < invalid, bad, values)
    return pa.array(values, mask=(roll >= invalid) & (roll < invalid + missing))


def crm_items(fleet: Fleet, first_day: date, *, items: int | None = None) -> pa.Table:
    """CRM items for the fleet, with the untidiness of a real CRM: users and prostheses it does
    not know, orders for another prosthesis, older duplicates of an order, users with no
    telemetry, and a few items that do not validate. Given `items`, exactly that many: orders
    for a random part of the fleet, 2 % customers without telemetry, 5 % older versions."""
    rng = np.random.default_rng([fleet.seed, 3])
    devices = fleet.table()
    users = devices["user_id"].to_numpy()
    ids = devices["prosthesis_id"].to_numpy(zero_copy_only=False).astype(object)
    m = len(users)
    base = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    bad = invalid_crm_items(first_unknown_user=fleet.users + 10_000, updated_at=base)

    if items is None:
        known_user = np.isin(users, np.unique(users)[rng.random(fleet.users) < 0.92])
    other_prosthesis = rng.random(m) < 0.03
    ids = np.where(other_prosthesis, [f"PROT-9{u:05d}" for u in users], ids)
    if items is None:
        keep = known_user & (rng.random(m) < 0.97)
        strangers = max(1, fleet.users // 30)
    else:
        strangers, superseded = max(1, items // 50), items // 20
        ordering = items - strangers - superseded - bad.num_rows
        if not 0 < ordering <= m:
            raise ValueError(f"{items} CRM items do not fit {m} prostheses")
        keep = np.sort(rng.choice(m, ordering, replace=False))
    users, ids = users[keep], ids[keep]

    extra = np.arange(fleet.users + 1, fleet.users + 1 + strangers)
    users = np.concatenate([users, extra])
    ids = np.concatenate([ids, [f"PROT-8{u:05d}" for u in extra]])
    k = len(users)

    updated = [
        base - timedelta(days=int(d), seconds=int(s))
        for d, s in zip(rng.integers(1, 300, k), rng.integers(0, 86_400, k), strict=True)
    ]
    ordered = [(first_day - timedelta(days=int(d))).isoformat() for d in rng.integers(30, 900, k)]
    rows = {
        "user_id": users,
        "email": [f"user{u}@example.com" for u in users],
        "first_name": [FIRST_NAMES[u % len(FIRST_NAMES)] for u in users],
        "last_name": [LAST_NAMES[u % len(LAST_NAMES)] for u in users],
        "prosthesis_id": ids,
        "order_date": [
            None if r < 0.02 else o for r, o in zip(rng.random(k), ordered, strict=True)
        ],
        "status": STATUSES[rng.integers(0, len(STATUSES), k)],
        "updated_at": updated,
    }
    current = pa.table(rows)
    # An older version of some orders: a pending order with an old e-mail, superseded since.
    if items is None:
        dup = rng.random(k) < 0.05
    else:
        dup = np.isin(np.arange(k), rng.choice(k, superseded, replace=False))
    older = current.filter(pa.array(dup))
    older = older.set_column(
        1, "email", pa.array([f"old.user{u}@example.com" for u in older["user_id"].to_pylist()])
    )
    older = older.set_column(6, "status", pa.array(["pending"] * older.num_rows))
    older = older.set_column(
        7,
        "updated_at",
        pa.array(
            [t - timedelta(days=10) for t in older["updated_at"].to_pylist()],
            pa.timestamp("us", tz="UTC"),
        ),
    )
    schema = bad.schema
    return pa.concat_tables([current.cast(schema), older.cast(schema), bad])


def invalid_crm_items(first_unknown_user: int, updated_at: datetime) -> pa.Table:
    """Three items a CRM should not hold, one per rule: user_id < 1, a bad date, no prosthesis."""
    return pa.table(
        {
            "user_id": pa.array([0, first_unknown_user, first_unknown_user + 1], pa.int64()),
            "email": ["nobody@example.com", "bad.date@example.com", "no.prosthesis@example.com"],
            "first_name": ["No", "Bad", "Empty"],
            "last_name": ["Id", "Date", "Prosthesis"],
            "prosthesis_id": ["PROT-000001", "PROT-000002", ""],
            "order_date": ["2024-01-01", "2024-13-45", "2024-01-01"],
            "status": ["active"] * 3,
            "updated_at": pa.array([updated_at] * 3, pa.timestamp("us", tz="UTC")),
        }
    )


def days_between(first_day: date, last_day: date) -> Iterator[date]:
    day = first_day
    while day <= last_day:
        yield day
        day += timedelta(days=1)


def load_telemetry(
    dsn: str,
    fleet: Fleet,
    first_day: date,
    last_day: date,
    tz: ZoneInfo,
    as_of: datetime | None = None,
    on_day: Callable[[date], None] | None = None,
) -> int:
    """Replace the telemetry table's contents with the generated days; returns the row count.
    `on_day` hears of each day before it is generated (for progress)."""
    days = _told(days_between(first_day, last_day), on_day)
    return _ingest(dsn, (telemetry_day(fleet, day, tz, as_of) for day in days), replace=True)


def upload_arrivals(
    dsn: str,
    fleet: Fleet,
    first_day: date,
    last_day: date,
    tz: ZoneInfo,
    *,
    after: datetime,
    until: datetime,
    on_day: Callable[[date], None] | None = None,
) -> int:
    """Add the generated events of first_day..last_day that reach the database in (after,
    until], as the devices would upload them: that day's own events and the late ones of the
    days before (up to five days late). Returns the row count."""
    reachable = [
        day
        for day in days_between(first_day, last_day)
        if day_bounds(day, tz)[0] <= until and day_bounds(day, tz)[1] + MAX_UPLOAD_DELAY > after
    ]
    return _ingest(
        dsn,
        (telemetry_day(fleet, day, tz, until, after) for day in _told(reachable, on_day)),
        replace=False,
    )


def _told(days: Iterable[date], on_day: Callable[[date], None] | None) -> Iterator[date]:
    for day in days:
        if on_day is not None:
            on_day(day)
        yield day


def _ingest(dsn: str, tables: Iterable[pa.Table], *, replace: bool) -> int:
    rows = 0
    with adbc_pg.connect(dsn) as conn:
        with conn.cursor() as cur:
            if replace:
                cur.execute("TRUNCATE public.telemetry_events RESTART IDENTITY")
            for table in tables:
                rows += cur.adbc_ingest("telemetry_events", table, mode="append")
            cur.execute("ANALYZE public.telemetry_events")
        conn.commit()
    return rows


def load_crm(dsn: str, fleet: Fleet, first_day: date) -> int:
    """Replace the CRM store's contents with the generated items; returns the item count."""
    with adbc_pg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE public.crm_orders RESTART IDENTITY")
            rows = cur.adbc_ingest("crm_orders", crm_items(fleet, first_day), mode="append")
        conn.commit()
    return rows
