"""BionicPRO reports ETL: prosthesis telemetry (PostgreSQL) + customers (CRM over HTTP)
-> the reports data mart `bionicpro_reports.reports_data_mart` (ClickHouse).

    create_data_mart_table >> [plan_report_days >> telemetry_shards >> extract_telemetry (x shards),
        extract_crm_data]
        >> transform_data >> check_data_quality >> load_to_clickhouse

Runs at 02:00 report time (BIONICPRO_SCHEDULE) and builds the report day that just ended, plus
every day within the look-back that received late events, and refreshes CRM changes. The work is
in the `bionicpro_etl` package; each task only opens clients and calls it. Tasks hand data over
through staging tables in ClickHouse; XCom carries only the plan's days and counts.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pendulum
from airflow.sdk import (
    AsyncCallback,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    Param,
    dag,
    task,
)

from bionicpro_etl import assets, callbacks, lineage, notify
from bionicpro_etl.config import settings

CONFIG = settings()
REPORT_TZ = pendulum.timezone(CONFIG.report_tz.key)


# Fresh by 06:00: a run not finished 4 h after it was queued is reported (notify.py); a setting
# of 0 turns it off. Runs of `airflow dags test` have no queued time, so no deadline applies to
# them, and Airflow 3.3's `dags test` (`DAG.test()`) cannot finish a run of a DAG with a deadline
# (it looks the alert up by a database id its copy of the DAG lacks): the file leaves it out when
# parsed for `airflow dags test`.
FRESHNESS = (
    None
    if sys.argv[1:3] == ["dags", "test"] or not CONFIG.freshness_deadline_seconds
    else DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=CONFIG.freshness_deadline_seconds),
        callback=AsyncCallback(callbacks.deadline_missed),
    )
)


@dag(
    dag_id="reports_etl_dag",
    description="Telemetry + CRM -> ClickHouse reports data mart; late data and CRM changes too",
    schedule=CronDataIntervalTimetable(CONFIG.schedule, timezone=REPORT_TZ),
    start_date=pendulum.datetime(2024, 1, 1, tz=REPORT_TZ),
    catchup=False,
    max_active_runs=1,  # a run publishes by rewriting months: one writer at a time
    deadline=FRESHNESS,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        # a hang becomes a failure that Airflow retries, never a stuck night
        "execution_timeout": timedelta(seconds=CONFIG.task_timeout_seconds),
        "on_failure_callback": [callbacks.log_failure, notify.on_failure],
        # what each task reads and writes, for OpenLineage when it is configured
        "on_execute_callback": lineage.report,
    },
    params={
        "crm_full_refresh": Param(False, type="boolean", description="read the whole CRM"),
        "force_rebuild": Param(
            False, type="boolean", description="rebuild the run's day even if nothing arrived"
        ),
    },
    tags=["bionicpro", "reports"],
)
def reports_etl_dag() -> None:
    # Imports of the package stay inside the tasks: parsing this file must stay cheap. Stage
    # results travel as XCom in their JSON form (bionicpro_etl.run).
    @task
    def create_data_mart_table(**context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.plan import DayNotEnded
        from bionicpro_etl.run import Run

        with clients.clickhouse() as ch:
            migrated = pipeline.create_data_mart_table(ch).to_xcom()
        try:
            pipeline.require_day_ended(clients.postgres_dsn(), Run.of(context))
        except DayNotEnded as error:  # fail the run at once: no retries, nothing read or moved
            raise AirflowFailException(str(error)) from error
        return migrated

    @task
    def plan_report_days(**context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import Run

        with clients.clickhouse() as ch:
            run = Run.of(context)
            return pipeline.plan_report_days(clients.postgres_dsn(), ch, run).to_xcom()

    @task
    def extract_telemetry(plan: dict, shard: int, **context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import Plan, Run

        with clients.clickhouse() as ch:
            return pipeline.extract_telemetry(
                clients.postgres_dsn(),
                ch,
                Run.of(context),
                Plan.from_xcom(plan),
                shard=shard,
            ).to_xcom()

    @task
    def telemetry_shards(plan: dict) -> list[int]:
        """The plan's shards of the users, one mapped extract task each."""
        from bionicpro_etl.run import Plan

        return list(range(Plan.from_xcom(plan).shards))

    @task
    def extract_crm_data(**context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import Run

        with clients.crm_session() as (session, base_url), clients.clickhouse() as ch:
            return pipeline.extract_crm_data(session, base_url, ch, Run.of(context)).to_xcom()

    @task
    def transform_data(plan: dict, crm: dict, **context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import CrmExtract, Plan, Run

        with clients.clickhouse() as ch:
            return pipeline.transform_data(
                ch, Run.of(context), Plan.from_xcom(plan), CrmExtract.from_xcom(crm)
            ).to_xcom()

    @task
    def check_data_quality(rows: dict, crm: dict, **context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import CrmExtract, Run, Transformed

        with clients.clickhouse() as ch:
            checks = pipeline.check_data_quality(
                ch, Run.of(context), Transformed.from_xcom(rows), CrmExtract.from_xcom(crm)
            )
        notify.quality_warnings(context, checks.warnings)
        return checks.to_xcom()

    # A load rewrites whole months: one at a time across all runs, backfills included (also
    # beyond Airflow's limits: the publication fence, bionicpro_etl.fence; it may plan again).
    # Each publish updates the mart and the monthly summary as assets (bionicpro_etl.assets),
    # with the days and months it changed; a run that publishes nothing ends this task as skipped.
    @task(max_active_tis_per_dag=1, outlets=list(assets.OUTLETS))
    def load_to_clickhouse(plan: dict, extracted: list, crm: dict, rows: dict, **context) -> dict:
        from bionicpro_etl import clients, pipeline
        from bionicpro_etl.run import CrmExtract, Plan, Run, TelemetryExtract, Transformed

        run = Run.of(context)
        with clients.crm_session() as (session, base_url), clients.clickhouse() as ch:
            loaded = pipeline.load_to_clickhouse(
                pipeline.Sources(clients.postgres_dsn(), session, base_url),
                ch,
                run,
                Plan.from_xcom(plan),
                [TelemetryExtract.from_xcom(e) for e in extracted],
                CrmExtract.from_xcom(crm),
                Transformed.from_xcom(rows),
            )
        assets.announce(context["outlet_events"], run, loaded)
        return loaded.to_xcom()

    plan, crm = plan_report_days(), extract_crm_data()
    create_data_mart_table() >> [plan, crm]
    # One mapped task per shard of the users (BIONICPRO_TELEMETRY_SHARDS, default 1), as many as
    # the plan decided: a worker whose environment differs can never drop a share of the users.
    extracted = extract_telemetry.partial(plan=plan).expand(shard=telemetry_shards(plan))
    rows = transform_data(plan, crm)
    extracted >> rows
    checks = check_data_quality(rows, crm)
    checks >> load_to_clickhouse(plan, extracted, crm, rows)


reports_etl_dag()
