"""The benchmark's tools: the statement profile (`python -m bionicpro_stack.bench.statements`),
whose timed client runs the same run and names each statement by its SQL file or its first words,
without the run's key; and the allocator setting of the processes that run chDB, which the
environment the stack starts from may override to measure the other side of its trade-off."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, time, timedelta
from importlib.resources import files
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
from bionicpro_stack.bench.data import NIGHT, night_window
from bionicpro_stack.bench.measure import QUARTERS, quarter
from bionicpro_stack.bench.statements import (
    RUN_KEY,
    TimedClient,
    Timings,
    sql_files,
    without_late_uploads,
)
from conftest import LAST_DAY, build_day

from bionicpro_etl.config import settings
from bionicpro_etl.queries import sql
from bionicpro_etl.staging import Staging


def test_every_sql_file_is_named():
    named = sql_files()
    assert named[sql("clickhouse/build/state_merge")] == "clickhouse/build/state_merge"
    # every file, none hidden behind another with the same text
    assert len(named) == len(list(Path(str(files("bionicpro_etl") / "sql")).rglob("*.sql")))


def test_a_run_through_the_timed_client_is_timed_by_statement(stack, ch, crm):
    timings = Timings()
    run_id = "statements_profile"
    result = build_day(stack, TimedClient(ch, timings), crm, LAST_DAY, run_id, force=True)  # type: ignore[arg-type]
    assert result.loaded.published_rows > 0
    calls = {name: len(times) for name, times in timings.calls.items()}
    # the next state of the day, then its telemetry; the day's rows; its month swapped in
    assert calls["clickhouse/build/state_merge.sql"] == 2
    assert calls["clickhouse/build/report_rows.sql"] == 1
    assert calls["clickhouse/build/mart_month_next.sql"] == 1
    key = Staging.for_run(run_id).telemetry.rsplit("_", 1)[1]
    assert RUN_KEY.search(f"telemetry_{key}")
    assert not [name for name in calls if key in name]
    assert any("partials_s0_<run>" in name for name in calls)


def test_the_allocator_setting_is_the_stacks_unless_the_environment_gives_one():
    def worker_env(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
        return subprocess.run(
            [sys.executable, "-c", "from bionicpro_stack.services import EMBEDDED_ENGINE_ENV as e;"
             " print(e['JE_MALLOC_CONF'])"],
            env={**clean, **env}, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    assert worker_env() == "dirty_decay_ms:0"
    assert worker_env(JE_MALLOC_CONF="dirty_decay_ms:5000") == "dirty_decay_ms:5000"


def test_the_quarters_of_the_night_tile_it():
    """(q) and the profile's `--quarters` append the night by these windows: every arrival is in
    exactly one, in order."""
    tz = settings().report_tz
    start, end = night_window(tz)
    windows = [quarter(k, tz) for k in range(QUARTERS)]
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in pairwise(windows))
    assert all(after < until for after, until in windows)


def test_own_day_only_leaves_out_the_late_uploads_and_nothing_else():
    tz = settings().report_tz
    start, _ = night_window(tz)
    own = datetime.combine(NIGHT, time(0, 0), tz)
    times = [
        own - timedelta(days=3),
        own - timedelta(microseconds=1),
        own,
        start,
        own + timedelta(days=1),
    ]
    arrivals = pa.table(
        {"event_time": pa.array(times, pa.timestamp("us", tz="UTC")), "k": range(5)}
    )
    assert without_late_uploads(arrivals, tz)["k"].to_pylist() == [2, 3, 4]
