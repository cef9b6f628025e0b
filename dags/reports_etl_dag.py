"""BionicPRO reports ETL: prosthesis telemetry (PostgreSQL) + customers (CRM over HTTP)
-> the reports data mart `bionicpro_reports.reports_data_mart` (ClickHouse).

    create_data_mart_table >> [extract_telemetry, extract_crm_data] >> transform_data
        >> load_to_clickhouse

Runs at 02:00 report time and builds the report day that just ended. The work is in the
`bionicpro_etl` package; each task only opens clients and calls it. Tasks hand data over through
staging tables in ClickHouse, and return only counts.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from bionicpro_etl.config import settings

REPORT_TZ = pendulum.timezone(settings().report_tz.key)


@dag(
    dag_id="reports_etl_dag",
    description="Telemetry + CRM -> ClickHouse reports data mart, one report day per run",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone=REPORT_TZ),
    start_date=pendulum.datetime(2024, 1, 1, tz=REPORT_TZ),
    catchup=False,
    max_active_runs=1,  # a day is published by rewriting its month: one writer at a time
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["bionicpro", "reports"],
)
def reports_etl_dag() -> None:
    # Imports of the package stay inside the tasks: parsing this file must stay cheap.
    @task
    def create_data_mart_table() -> None:
        from bionicpro_etl import clients, pipeline

        with clients.clickhouse() as ch:
            pipeline.create_data_mart_table(ch)

    @task
    def extract_telemetry(**context) -> dict[str, int]:
        from bionicpro_etl import clients, pipeline

        with clients.clickhouse() as ch:
            return pipeline.extract_telemetry(clients.postgres_dsn(), ch, pipeline.Run.of(context))

    @task
    def extract_crm_data(**context) -> dict[str, int]:
        from bionicpro_etl import clients, pipeline

        with clients.crm_session() as (session, base_url), clients.clickhouse() as ch:
            return pipeline.extract_crm_data(session, base_url, ch, pipeline.Run.of(context))

    @task
    def transform_data(**context) -> dict[str, int]:
        from bionicpro_etl import clients, pipeline

        with clients.clickhouse() as ch:
            return pipeline.transform_data(ch, pipeline.Run.of(context))

    @task
    def load_to_clickhouse(**context) -> dict[str, int]:
        from bionicpro_etl import clients, pipeline

        with clients.clickhouse() as ch:
            return pipeline.load_to_clickhouse(ch, pipeline.Run.of(context))

    extracted = [extract_telemetry(), extract_crm_data()]
    create_data_mart_table() >> extracted
    extracted >> transform_data() >> load_to_clickhouse()


reports_etl_dag()
