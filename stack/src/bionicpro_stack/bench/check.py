"""The benchmark's verdict on correctness: the runs built the same mart rows, and as many as
(a) aggregated. A fast wrong answer does not pass."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from bionicpro_etl import schema
from bionicpro_stack.bench.job import Measured
from bionicpro_stack.services import Stack

if TYPE_CHECKING:
    import pandas as pd

# The mart's columns a report reads (its DDL describes them); the naive reference computes the
# contract's columns only, so each pair of runs is compared on the columns both have.
COLUMNS = schema.report_columns()


def snapshot_path(stack: Stack, label: str) -> Path:
    """Where a snapshot of mart rows (`measure.snapshot`) is kept."""
    return stack.root / "results" / f"{label}.parquet"


def _read(stack: Stack, label: str) -> pd.DataFrame:
    return pq.read_table(snapshot_path(stack, label)).to_pandas()


def check(stack: Stack, snapshots: Sequence[str], aggregate_rows: set[int]) -> list[str]:
    """Every snapshot against the first, and the row count against (a)'s."""
    reference, *others = snapshots
    expected = _read(stack, reference)
    problems = [
        f"{reference} has {len(expected):,} rows, (a) {rows:,}"
        for rows in aggregate_rows
        if rows != len(expected)
    ]
    for label in others:
        problems += [f"{label}: {p}" for p in differences(expected, _read(stack, label))]
    return problems


def check_nights(
    stack: Stack, snapshots: Sequence[str], events: dict[str, int], runs: Sequence[Measured]
) -> list[str]:
    """Every round of a night rebuilt each of the days its events name, built the same rows, and
    every event of each day, the late ones included, is counted in the day's rows exactly once."""
    reference, *others = snapshots
    expected = _read(stack, reference)
    problems = [
        f"{label}: {p}" for label in others for p in differences(expected, _read(stack, label))
    ]
    problems += [
        f"{reference}: rebuilt {m.pipeline.loaded.days} day(s), not {len(events)}"
        for m in runs
        if m.pipeline.loaded.days != len(events)
    ]
    actions = expected.groupby(expected["report_date"].astype(str))["total_actions"].sum()
    problems += [
        f"{reference}: {day} has {int(actions.get(day, 0)):,} actions in the mart, {n:,} events in"
        " PostgreSQL"
        for day, n in events.items()
        if actions.get(day, 0) != n
    ]
    return problems


def differences(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    """Where two sets of the day's mart rows (same order) differ, on the columns both have: exact
    for every column but the floats, which agree to 1e-4 relative (all are stored as Float32, so
    the naive reference's float64 arithmetic is compared after the same rounding)."""
    if len(expected) != len(actual):
        return [f"{len(expected)} rows against {len(actual)}"]
    problems = []
    for column in (c for c in COLUMNS if c.name in expected and c.name in actual):
        a, b = expected[column.name], actual[column.name]
        if column.is_float:
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            same = (np.isnan(x) & np.isnan(y)) | np.isclose(x, y, rtol=1e-4, atol=1e-6)
        else:
            a, b = a.astype(object), b.astype(object)
            same = ((a.isna() & b.isna()) | (a == b)).to_numpy()
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            problems.append(
                f"{column.name}: {int((~same).sum())} rows differ, first at {expected['user_id'][i]}"
                f"/{expected['prosthesis_id'][i]}: {a[i]!r} against {b[i]!r}"
            )
    return problems
