"""The mart and the monthly summary as Airflow assets, so other DAGs can be scheduled on them.

`load_to_clickhouse` declares both as its outlets. A run that publishes emits one asset event for
each, whose extra says what changed (`event_extra`); a downstream DAG (a reports cache, an
analyst's export; `dags/reports_refresh_example.py`) reads it from `triggering_asset_events`. A
run that publishes nothing emits nothing: its load ends as skipped, which Airflow counts as no
update of its outlets.

The DAG file imports this module when parsed, so it imports only Airflow's SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

if TYPE_CHECKING:
    from bionicpro_etl.run import Loaded, Run

# One name per table, as readers know it; the URI says where it lives, the same for every
# deployment (the ClickHouse server is the connection's, not the asset's).
MART = Asset(
    name="bionicpro_reports.reports_data_mart",
    uri="clickhouse:///bionicpro_reports/reports_data_mart",
    group="bionicpro_reports",
)
SUMMARY = Asset(
    name="bionicpro_reports.user_monthly_summary",
    uri="clickhouse:///bionicpro_reports/user_monthly_summary",
    group="bionicpro_reports",
)
OUTLETS = (MART, SUMMARY)


def event_extra(run: Run, loaded: Loaded) -> dict[str, Any]:
    """What a consumer needs to know of a publish: the run, the report days and months that
    changed, whether each of those days is complete (its arrivals read past its end; on a
    sub-daily schedule today is not), and the rows published."""
    return {
        "run_id": run.run_id,
        "report_day": run.day.isoformat(),
        "days": [day.isoformat() for day in loaded.changed_days],
        "months": sorted({day.strftime("%Y-%m") for day in loaded.changed_days}),
        "complete": {day.isoformat(): done for day, done in loaded.complete.items()},
        "published_rows": loaded.published_rows,
    }


def announce(outlet_events: Any, run: Run, loaded: Loaded) -> None:
    """Give each outlet's event the publish's extra; when nothing was published, end the task
    as skipped instead, so that no event is emitted and no consumer runs for nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not loaded.changed_days:
        raise AirflowSkipException("nothing new was published: no asset event")
    extra = event_extra(run, loaded)
    for asset in OUTLETS:
        outlet_events[asset].extra = extra
