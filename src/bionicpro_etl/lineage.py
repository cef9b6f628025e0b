"""Lineage: the tables and the endpoint each task reads and writes, for OpenLineage.

The official OpenLineage provider (apache-airflow-providers-openlineage) makes an event for every
task; for a TaskFlow task it takes the inputs and outputs from Airflow's hook lineage collector,
which hooks fill as they work. The ClickHouse hook reports nothing, and the pipeline reads
PostgreSQL through ADBC and the CRM through a requests session, past the hooks' own methods. So
each task reports its datasets here, with the hook that holds each store's connection
(`report`, the DAG's `on_execute_callback`), and this package declares the asset URIs of
ClickHouse tables (`clickhouse://host:port/database/table`) and of HTTP endpoints with their
OpenLineage names, as a provider does (`provider_info`, the `apache_airflow_provider` entry point
in pyproject.toml).

Off unless OpenLineage is configured (`[openlineage] transport`, see docs/operations.md): without
it Airflow's collector drops what it is told, at no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from airflow.sdk import Asset
    from openlineage.client.event_v2 import Dataset

    from bionicpro_etl.staging import Staging

# The telemetry table, as the contract names it.
TELEMETRY = "public.telemetry_events"


@dataclass(frozen=True)
class Datasets:
    """What a task touches: telemetry tables (PostgreSQL), the CRM listing, ClickHouse tables
    (`database.table`)."""

    postgres: tuple[str, ...] = ()
    crm: bool = False
    clickhouse: tuple[str, ...] = ()


def task_datasets(task_id: str, stage: Staging, shard: int = 0) -> tuple[Datasets, Datasets]:
    """The inputs and the outputs of one task of `reports_etl_dag` in the run of `stage`."""
    from bionicpro_etl import schema, staging

    def staged(table: str) -> str:
        return f"{staging.DATABASE}.{table}"

    def store(*tables: str) -> tuple[str, ...]:
        return tuple(f"{schema.DATABASE}.{table}" for table in tables)

    report_rows, crm_orders_next = staged(stage.report_rows), staged(stage.crm_orders_next)
    telemetry, changed_users = staged(stage.telemetry), staged(stage.changed_users)
    crm_items, partials = staged(stage.crm_items), staged(stage.partials)
    state_next, published_days_next = staged(stage.state_next), staged(stage.published_days_next)
    known: dict[str, tuple[Datasets, Datasets]] = {
        "create_data_mart_table": (Datasets(), Datasets(clickhouse=schema.tables())),
        "plan_report_days": (
            Datasets(postgres=(TELEMETRY,), clickhouse=store("etl_runs", "telemetry_state")),
            Datasets(clickhouse=(partials,)),
        ),
        "extract_telemetry": (
            Datasets(postgres=(TELEMETRY,)),
            Datasets(clickhouse=(staged(stage.partials_shard(shard)),)),
        ),
        "extract_crm_data": (
            Datasets(crm=True, clickhouse=store("etl_runs", "crm_orders")),
            Datasets(clickhouse=(crm_items, *store("crm_rejects"))),
        ),
        "transform_data": (
            Datasets(clickhouse=(partials, crm_items, *store("telemetry_state", "crm_orders",
                                                             "reports_data_mart", "published_days",
                                                             "etl_runs"))),
            Datasets(clickhouse=(state_next, telemetry, crm_orders_next, changed_users,
                                 staged(stage.crm_fields), report_rows, published_days_next)),
        ),
        "check_data_quality": (
            Datasets(clickhouse=(report_rows, telemetry, *store("reports_data_mart"))),
            Datasets(clickhouse=store("quality_checks")),
        ),
        "load_to_clickhouse": (
            Datasets(clickhouse=(report_rows, changed_users, crm_orders_next, state_next,
                                 published_days_next, *store("etl_runs"))),
            Datasets(
                clickhouse=store(
                    "reports_data_mart", "user_monthly_summary", "telemetry_state", "crm_orders",
                    "published_days", "etl_runs",
                )
            ),
        ),
    }  # fmt: skip
    return known.get(task_id, (Datasets(), Datasets()))


def report(context: Mapping[str, Any]) -> None:
    """Tell Airflow's hook lineage collector what the task of `context` reads and writes, each
    dataset with the hook of its store (the DAG's `on_execute_callback`)."""
    from airflow.sdk.lineage import NoOpCollector, get_hook_lineage_collector

    from bionicpro_etl.run import Run

    collector = get_hook_lineage_collector()
    if isinstance(collector, NoOpCollector):  # no lineage reader (OpenLineage is off)
        return
    ti = context["ti"]
    shard = max(ti.map_index, 0) if ti.map_index is not None else 0
    inputs, outputs = task_datasets(ti.task_id, Run.of(context).stage, shard)
    for datasets, add in (
        (inputs, collector.add_input_asset),
        (outputs, collector.add_output_asset),
    ):
        for hook, uri in _uris(datasets):
            add(context=hook, uri=uri)


def _uris(datasets: Datasets) -> list[tuple[Any, str]]:
    """Each dataset's asset URI, with the hook whose connection says where its store is."""
    from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from bionicpro_etl.clients import CLICKHOUSE_CONN_ID, CRM_CONN_ID, POSTGRES_CONN_ID
    from bionicpro_etl.extract import CUSTOMERS_PATH

    found: list[tuple[Any, str]] = []
    if datasets.postgres:
        hook = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID)
        conn = hook.connection
        # A unix socket (the embedded stack's) has a path for a host: the server is this one.
        host = "localhost" if (conn.host or "").startswith("/") else conn.host or "localhost"
        database = hook.database or conn.schema
        found += [(hook, f"postgres://{host}:{conn.port or 5432}/{database}/{t.replace('.', '/')}")
                  for t in datasets.postgres]  # fmt: skip
    if datasets.crm:
        hook = HttpHook(method="GET", http_conn_id=CRM_CONN_ID)
        conn = hook.get_connection(CRM_CONN_ID)
        port = f":{conn.port}" if conn.port else ""
        found.append((hook, f"{conn.schema or 'http'}://{conn.host}{port}{CUSTOMERS_PATH}"))
    if datasets.clickhouse:
        hook = ClickHouseHook(clickhouse_conn_id=CLICKHOUSE_CONN_ID)
        conn = hook.get_connection(CLICKHOUSE_CONN_ID)
        server = f"{conn.host or 'localhost'}:{conn.port or 8123}"
        found += [
            (hook, f"clickhouse://{server}/{t.replace('.', '/')}") for t in datasets.clickhouse
        ]
    return found


def provider_info() -> dict[str, Any]:
    """What Airflow reads of this package as of a provider: the asset URIs it knows."""
    return {
        "package-name": "bionicpro-etl",
        "name": "BionicPRO reports ETL",
        "description": "The asset URIs of ClickHouse tables and HTTP endpoints, for lineage.",
        "asset-uris": [
            {"schemes": ["clickhouse"], "handler": None,
             "to_openlineage_converter": "bionicpro_etl.lineage.clickhouse_dataset"},
            {"schemes": ["http", "https"], "handler": None,
             "to_openlineage_converter": "bionicpro_etl.lineage.http_dataset"},
        ],
    }  # fmt: skip


def clickhouse_dataset(asset: Asset, lineage_context: Any = None) -> Dataset:
    """`clickhouse://host:port/database/table` as OpenLineage names it: namespace the server,
    name `database.table`."""
    from openlineage.client.event_v2 import Dataset

    parts = _split(asset)
    return Dataset(
        namespace=f"clickhouse://{parts.netloc}", name=parts.path.strip("/").replace("/", ".")
    )


def http_dataset(asset: Asset, lineage_context: Any = None) -> Dataset:
    """An HTTP endpoint: namespace the server (`http://host:port`), name the path."""
    from openlineage.client.event_v2 import Dataset

    parts = _split(asset)
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path)


def _split(asset: Asset) -> SplitResult:
    from urllib.parse import urlsplit

    return urlsplit(asset.uri)
