"""The mart and the monthly summary as Airflow assets, on a running Airflow: a publish emits an
event for each, with the days and months it changed, and triggers the example consumer DAG; a
run that publishes nothing emits nothing."""

from __future__ import annotations

import json

from airflow_services import DAGS, wait_for

DAY = "2024-01-06"
MART, SUMMARY = "bionicpro_reports.reports_data_mart", "bionicpro_reports.user_monthly_summary"
CONSUMER = "reports_refresh_example"


def test_the_load_updates_both_tables_and_the_example_consumer_is_off_by_default():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    load = bag.dags["reports_etl_dag"].get_task("load_to_clickhouse")
    assert {asset.name for asset in load.outlets} == {MART, SUMMARY}
    consumer = bag.dags[CONSUMER]
    assert consumer.is_paused_upon_creation is True
    assert [asset.name for asset in consumer.timetable.asset_condition.objects] == [MART]


def events(services) -> list[dict]:
    return services.get("assets/events", source_dag_id="reports_etl_dag", order_by="timestamp")[
        "asset_events"
    ]


def load_state(services, run_id: str) -> str:
    return services.get(f"dags/reports_etl_dag/dagRuns/{run_id}/taskInstances/load_to_clickhouse")[
        "state"
    ]


def test_a_publish_triggers_the_consumer_and_a_run_with_nothing_new_emits_nothing(
    airflow_services,
):
    services = airflow_services
    assert services.get(f"dags/{CONSUMER}")["is_paused"]  # off by default
    services.patch(f"dags/{CONSUMER}", {"is_paused": False})
    before = len(events(services))

    # A forced rebuild of the day publishes it.
    services.cli("dags", "test", "reports_etl_dag", DAY, "-c", json.dumps({"force_rebuild": True}))
    new = events(services)[before:]
    assert sorted(e["name"] for e in new) == [MART, SUMMARY]
    extra = new[0]["extra"]
    assert new[1]["extra"] == extra
    assert extra["report_day"] == DAY
    assert DAY in extra["days"] and extra["months"] == ["2024-01"]
    assert extra["complete"][DAY] is True  # a day of the daily schedule, read past its end
    assert set(extra["complete"]) == set(extra["days"])
    assert extra["published_rows"] > 0
    assert load_state(services, extra["run_id"]) == "success"

    # The consumer runs for it, and sees what the publishes it was triggered by changed: this
    # one, the latest, and any earlier on this Airflow (a first run after unpausing takes every
    # publish since the DAG was scheduled on the mart: the deadline test's nightly run publishes).
    consumer = wait_for(
        lambda: [r for r in services.runs(CONSUMER) if r["state"] == "success"],
        240,
        f"{CONSUMER} to run after the publish\n{services.log_tail()}",
    )[-1]
    assert consumer["run_type"] == "asset_triggered"
    run = f"dags/{CONSUMER}/dagRuns/{consumer['dag_run_id']}"
    upstream = services.get(f"{run}/upstreamAssetEvents")["asset_events"]
    triggering = sorted((e for e in upstream if e["name"] == MART), key=lambda e: e["timestamp"])
    assert triggering[-1]["extra"] == extra
    complete = {day: c for e in triggering for day, c in e["extra"]["complete"].items()}
    seen = services.get(f"{run}/taskInstances/refresh_reports/xcomEntries/return_value")["value"]
    assert set(extra["days"]) <= set(seen["days"])
    assert seen == {"days": sorted(complete), "complete": complete}

    # The same day again: nothing arrived since, nothing is published, no event, no consumer run.
    consumer_runs = len(services.runs(CONSUMER))
    services.cli("dags", "test", "reports_etl_dag", DAY)
    again = services.runs("reports_etl_dag")[-1]
    assert load_state(services, again["dag_run_id"]) == "skipped"
    assert len(events(services)) == before + 2
    assert len(services.runs(CONSUMER)) == consumer_runs
