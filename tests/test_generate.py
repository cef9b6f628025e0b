"""The stack's generator at exact sizes, as the benchmark asks for them: exactly that many
prostheses, events and CRM items, made the same way as the natural sizes."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pyarrow.compute as pc
import pytest
from bionicpro_stack import generate

DAY = date(2024, 3, 14)
MOSCOW = ZoneInfo("Europe/Moscow")


def test_exact_sizes_are_exact() -> None:
    fleet = generate.Fleet(users=400, seed=3, prostheses=500)
    devices = fleet.table()
    assert devices.num_rows == 500
    assert pc.count_distinct(devices["user_id"]).as_py() == 400  # every user has one
    assert pc.count_distinct(devices["prosthesis_id"]).as_py() == 500
    events = generate.telemetry_day(fleet, DAY, MOSCOW, events=12_345)
    assert events.num_rows == 12_345
    assert set(events.column_names) == set(generate.telemetry_day(fleet, DAY, MOSCOW).column_names)
    items = generate.crm_items(fleet, DAY, items=400)
    assert items.num_rows == 400
    assert pc.sum(pc.equal(items["status"], "pending")).as_py() == 400 // 20  # older versions


def test_an_exact_size_that_cannot_be_made_is_refused() -> None:
    with pytest.raises(ValueError, match="at least users"):
        generate.Fleet(users=10, prostheses=5)
    with pytest.raises(ValueError, match="do not fit"):
        generate.crm_items(generate.Fleet(users=10, prostheses=10), DAY, items=1_000)
