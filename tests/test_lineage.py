"""OpenLineage through the official provider, on a running Airflow with the file transport: every
task's event names the PostgreSQL table, the CRM endpoint and the ClickHouse tables it reads and
writes; the ClickHouse tables and the CRM endpoint by this project's own asset URIs."""

from __future__ import annotations

import json

from bionicpro_etl.staging import Staging

PG = "postgres://localhost:5432"
CH = "clickhouse://localhost:8123"
TELEMETRY = (PG, "bionicpro.public.telemetry_events")


def store(*tables: str) -> set[tuple[str, str]]:
    return {(CH, f"bionicpro_reports.{t}") for t in tables}


def expected(key: str, crm: str) -> dict[str, tuple[set, set]]:
    def staged(*kinds: str) -> set[tuple[str, str]]:
        return {(CH, f"bionicpro_staging.{kind}_{key}") for kind in kinds}

    return {
        "create_data_mart_table": (set(), store(
            "reports_data_mart", "user_monthly_summary", "crm_orders", "crm_rejects", "etl_runs",
            "quality_checks", "published_days", "telemetry_state", "schema_migrations")),
        "plan_report_days": ({TELEMETRY} | store("etl_runs", "telemetry_state"), staged("partials")),
        "telemetry_shards": (set(), set()),
        "extract_telemetry": ({TELEMETRY}, staged("partials_s0")),
        "extract_crm_data": ({(crm, "/api/v1/customers")} | store("etl_runs", "crm_orders"),
                             staged("crm_items") | store("crm_rejects")),
        "transform_data": (staged("partials", "crm_items")
                           | store("telemetry_state", "crm_orders", "reports_data_mart",
                                   "published_days", "etl_runs"),
                           staged("state_next", "telemetry", "crm_orders_next",
                                  "changed_users", "crm_fields", "report_rows",
                                  "published_days_next")),
        "check_data_quality": (staged("report_rows", "telemetry") | store("reports_data_mart"),
                               store("quality_checks")),
        "load_to_clickhouse": (staged("report_rows", "changed_users", "crm_orders_next", "state_next",
                                      "published_days_next")
                               | store("etl_runs"),
                               store("reports_data_mart", "user_monthly_summary", "telemetry_state",
                                     "crm_orders", "published_days", "etl_runs")),
    }  # fmt: skip


def test_every_task_names_the_datasets_it_reads_and_writes(airflow_services, nightly_run, stack):
    """On the running Airflow's nightly run (`nightly_run`, conftest.py; the deadline test
    checks its mail)."""
    services, run_id = airflow_services, nightly_run["dag_run_id"]
    assert nightly_run["state"] == "success"

    events = [json.loads(line) for line in services.lineage_file.read_text().splitlines()]
    completed = {
        e["job"]["name"].removeprefix("reports_etl_dag."): e
        for e in events
        if e["eventType"] == "COMPLETE"
        and e["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id") == run_id
    }
    want = expected(Staging.for_run(run_id).key, f"http://127.0.0.1:{stack.crm_port}")
    assert set(completed) == set(want)
    for task, (inputs, outputs) in want.items():
        event = completed[task]
        assert {(d["namespace"], d["name"]) for d in event["inputs"]} == inputs, task
        assert {(d["namespace"], d["name"]) for d in event["outputs"]} == outputs, task
