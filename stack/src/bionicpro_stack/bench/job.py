"""The benchmark's vocabulary: its scale, what a measuring process is told (`Job`) and what it
reports back (`Measured`), both as JSON; the report day and the tables it reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bionicpro_etl.run import RunResult
from bionicpro_stack.services import Stack

ROOT = Path(".stack/bench")
DAY = date(2024, 3, 14)
SEED = 42
MART = "bionicpro_reports.reports_data_mart"
NAIVE_TABLE = "bench_naive.mart"


@dataclass(frozen=True)
class Scale:
    events: int
    prostheses: int
    users: int
    crm_orders: int
    repeat: int


FULL = Scale(events=10_000_000, prostheses=50_000, users=40_000, crm_orders=40_000, repeat=3)
SMALL = Scale(events=500_000, prostheses=5_000, users=4_000, crm_orders=4_000, repeat=1)


@dataclass(frozen=True)
class Job:
    """What a measuring subprocess needs to know, passed to it as JSON."""

    root: str
    crm_port: int
    scale: Scale
    arg: str = ""  # the run id of a pipeline run, the label of a snapshot
    table: str = MART  # the table a snapshot reads
    result: str = ""
    day: str = DAY.isoformat()  # a pipeline run's own day; a snapshot reads first_day to this one
    first_day: str = DAY.isoformat()

    @property
    def stack(self) -> Stack:
        return Stack(Path(self.root), self.crm_port)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        return cls(**{**raw, "scale": Scale(**raw["scale"])})


@dataclass
class Measured:
    """One measurement: wall time, rows, the process's peak RSS; a pipeline run's own result
    (its stages' times among it), the events a day holds, the engine's version; for a series of
    runs, each one's time; what PostgreSQL read meanwhile, by its own statistics."""

    seconds: float
    rows: int
    peak_rss_mb: float = 0.0
    run: dict[str, Any] | None = None  # RunResult, as JSON
    events: dict[str, int] = field(default_factory=dict)  # by report day
    version: str = ""
    times: list[float] = field(default_factory=list)  # each run of a series of runs
    rows_read: int = 0  # rows PostgreSQL read meanwhile (its statistics, not the pipeline's)
    blocks_read: int = 0  # and the table's blocks it touched (hit or read)
    postgres_seconds: float = 0.0  # and the time its sessions spent executing statements

    @property
    def pipeline(self) -> RunResult:
        if self.run is None:
            raise ValueError("not a pipeline run")
        return RunResult.from_xcom(self.run)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measured:
        return cls(**json.loads(text))
