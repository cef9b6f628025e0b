"""An example consumer of the reports mart: runs whenever `reports_etl_dag` publishes.

Scheduled on the mart's asset (`bionicpro_etl.assets.MART`), it gets one asset event per publish
since its last run, each saying which report days and months changed and whether each day is
complete. A reports service would refresh its cache for those days; an analyst's export would
redo those months. This one only says what it would refresh.

Off by default: it is created paused. Unpause it (UI, or `airflow dags unpause
reports_refresh_example`) to see it run after each publish; copy it to build a real consumer.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import dag, task

from bionicpro_etl.assets import MART

log = logging.getLogger(__name__)


@dag(
    dag_id="reports_refresh_example",
    description="Example: refresh what reads the mart, for the days each publish changed",
    schedule=[MART],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["bionicpro", "reports", "example"],
)
def reports_refresh_example() -> None:
    @task(inlets=[MART])
    def refresh_reports(*, triggering_asset_events=None) -> dict:
        """The days to refresh: every day any of the triggering publishes changed, with whether
        it is complete as of the latest of them."""
        complete: dict[str, bool] = {}
        for event in sorted(triggering_asset_events[MART], key=lambda e: e.timestamp):
            extra = event.extra
            log.info(
                "run %s published %s rows: days %s (months %s)",
                extra["run_id"], extra["published_rows"], extra["days"], extra["months"],
            )  # fmt: skip
            complete.update(extra["complete"])
        days = sorted(complete)
        log.info("would refresh the reports of %d days: %s", len(days), days)
        return {"days": days, "complete": complete}

    refresh_reports()


reports_refresh_example()
