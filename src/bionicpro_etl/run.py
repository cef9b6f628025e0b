"""The run and what its stages hand each other: the bottom of the package, importing none of it
but the settings, the report day and the staging names.

Stage results are small typed records. Between Airflow tasks they travel as XCom in their JSON
form (`to_xcom` / `from_xcom`); the data itself stays in the run's staging tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field

from bionicpro_etl.config import Settings, settings
from bionicpro_etl.report_day import report_day_of

if TYPE_CHECKING:  # staging loads the ClickHouse client; the DAG file imports this module
    from bionicpro_etl.staging import Staging


@dataclass(frozen=True)
class Run:
    """One pipeline run: its id (names its staging tables), its own report day, and what its
    trigger asked for: a full CRM refresh, a rebuild of its day even if nothing arrived."""

    run_id: str
    day: date
    logical_date: datetime | None = None
    crm_full_refresh: bool = False
    force_rebuild: bool = False

    @classmethod
    def of(cls, context: Mapping[str, Any], config: Settings | None = None) -> Run:
        """The run an Airflow task context describes. A manual trigger without a logical date
        builds the day before the one it was triggered on, as if it were that night's run."""
        logical_date: datetime | None = context.get("logical_date")
        # A context with a logical date may carry no run (the tests' do not).
        run_after = None if logical_date is not None else context["dag_run"].run_after
        params = context.get("params") or {}
        return cls(
            run_id=context["run_id"],
            day=cls.day_of(logical_date, run_after, config),
            logical_date=logical_date,
            crm_full_refresh=bool(params.get("crm_full_refresh", False)),
            force_rebuild=bool(params.get("force_rebuild", False)),
        )

    @staticmethod
    def day_of(
        logical_date: datetime | None, run_after: datetime | None, config: Settings | None = None
    ) -> date:
        """The report day of a DAG run: its logical date's, or for a run without one (a manual
        trigger) the day before the one it runs after."""
        tz = (config or settings()).report_tz
        if logical_date is not None:
            return report_day_of(logical_date, tz)
        assert run_after is not None, "a run without a logical date has a run_after"
        return report_day_of(run_after, tz) - timedelta(days=1)

    @property
    def stage(self) -> Staging:
        from bionicpro_etl.staging import Staging

        return Staging.for_run(self.run_id)


class StageResult(BaseModel):
    """What a stage reports: frozen, and JSON for XCom."""

    model_config = ConfigDict(frozen=True)

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, meta: Mapping[str, Any] | Self) -> Self:
        return meta if isinstance(meta, cls) else cls.model_validate(meta)


class StoreReady(StageResult):
    """The store made ready for the run: its tables created, the migrations it lacked applied."""

    migrations: list[str]
    seconds: float


class Plan(StageResult):
    """What the run reads from PostgreSQL, decided once for every shard of the extract.

    Arrivals are read from `reread_from` to `watermark_after` (none when `reread_from` is None:
    a first run) and sorted into the days `state_start`..`state_end`. They are merged into the
    state of the `kept` days (empty for a day with no event received by `reread_from`); the days
    in `read_whole` are read whole instead (up to `reread_from`; the arrivals bring the rest).
    Arrivals for other days are not applied, only counted. `days` are published whatever
    arrives: the own day unless published (or when forced), and on a first run the days it
    reads whole. `reread_next` is where the next run reads arrivals after."""

    days: tuple[date, ...]
    read_whole: tuple[date, ...]
    kept: tuple[date, ...]
    lookback_start: date
    state_start: date
    state_end: date
    watermark_before: datetime | None
    watermark_after: datetime | None
    reread_from: datetime | None
    reread_next: datetime | None
    # The days after the own one that runs have published: they keep taking their arrivals.
    published_after: tuple[date, ...] = ()
    # The latest publication when the run planned: its fence (fence.py).
    publication: int = 0
    # How many mapped tasks share the telemetry extract (each reads the users whose hash falls
    # to it modulo this): decided once, here, and expanded over, so every shard agrees.
    shards: int = Field(default=1, ge=1)
    seconds: float = 0.0

    @property
    def state_days(self) -> tuple[date, ...]:
        """The days whose state is complete once the run publishes."""
        return tuple(sorted({*self.kept, *self.read_whole}))


class TelemetryExtract(StageResult):
    """One shard's partial aggregates, staged."""

    telemetry_rows: int
    seconds: float


class CrmExtract(StageResult):
    """The CRM items staged (valid ones) and rejected, and the dimension's watermark before."""

    crm_items: int
    crm_rejects: int
    crm_reject_share: float
    crm_full_refresh: bool
    crm_watermark_before: datetime | None
    seconds: float


class Transformed(StageResult):
    """The days the run publishes (those `Plan.days` names and those that received arrivals),
    the events it read, and the report rows built: fresh ones of those days, and those
    re-joined for CRM changes."""

    days: tuple[date, ...]
    # Those of `days` whose end the arrival bound has passed (`complete` in published_days); the
    # others are a day so far (a sub-daily schedule's today).
    complete: tuple[date, ...] = ()
    # The days whose telemetry state the run changed: the days it publishes, and later days
    # never published (left to their own runs) that received arrivals.
    state_changed: tuple[date, ...]
    events_read: int
    events_beyond_lookback: int
    # Arrived events whose time no report day can have (1960, 2200, infinity, far ahead of their
    # arrival: a broken clock); never rows, never days to rebuild.
    events_bad_time: int
    report_rows: int
    refreshed_rows: int
    crm_changed_users: int
    seconds: float


class Checked(StageResult):
    """How many quality checks ran, and the warn-level ones (for the notifiers)."""

    checks: int
    warnings: list[str]
    seconds: float


class Loaded(StageResult):
    """What the publish swapped in: the rows, the days the run rebuilt (`days`, a count), the
    report days it rewrote (rebuilt, or re-joined with new CRM data) and whether each of those
    is complete (the arrivals read reach past its end in the report zone)."""

    published_rows: int
    days: int
    seconds: float
    changed_days: tuple[date, ...] = ()
    complete: dict[date, bool] = Field(default_factory=dict)


class Prepared(StageResult):
    """What a load publishes: the results of the stages between the store and the load."""

    plan: Plan
    extracted: list[TelemetryExtract]
    crm: CrmExtract
    rows: Transformed
    checks: Checked


class RunResult(Prepared):
    """Every stage's result of one run, as `pipeline.run_all` returns them."""

    store: StoreReady
    loaded: Loaded

    @property
    def telemetry_rows(self) -> int:
        return sum(e.telemetry_rows for e in self.extracted)

    def stage_seconds(self) -> dict[str, float]:
        """Each stage's own time, by its task's name, in the DAG's order."""
        return {
            "create_data_mart_table": self.store.seconds,
            "plan_report_days": self.plan.seconds,
            "extract_telemetry": sum(e.seconds for e in self.extracted),
            "extract_crm_data": self.crm.seconds,
            "transform_data": self.rows.seconds,
            "check_data_quality": self.checks.seconds,
            "load_to_clickhouse": self.loaded.seconds,
        }


def as_utc(value: datetime | None) -> datetime | None:
    """A DateTime64(..., 'UTC') value as an aware datetime (chDB returns it without its zone)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
