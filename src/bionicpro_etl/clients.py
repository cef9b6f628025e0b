"""Clients of the three stores, made from the Airflow connections through the official hooks.

The connection ids are the contract's (section 2); a deployment changes the connections, never
the code. Hooks are imported here, inside functions, so the DAG file stays cheap to parse.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import requests
from psycopg.conninfo import make_conninfo

from bionicpro_etl.extract import with_retries

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

POSTGRES_CONN_ID = "postgres_default"
CRM_CONN_ID = "crm_http"
CLICKHOUSE_CONN_ID = "clickhouse_default"

# Options of a postgres connection's extra that libpq understands as they are.
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options")


def postgres_dsn() -> str:
    """A libpq conninfo for the telemetry database (ADBC reads it; psycopg could too)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID)
    conn = hook.connection
    extra = conn.extra_dejson
    return make_conninfo(
        host=conn.host or None,
        port=conn.port or None,
        user=conn.login or None,
        password=conn.password or None,
        dbname=hook.database or conn.schema or None,
        **{key: extra[key] for key in _LIBPQ_EXTRAS if key in extra},
    )


@contextmanager
def crm_session() -> Iterator[tuple[requests.Session, str]]:
    """An HTTP session with the CRM's Basic auth and retry policy, and the CRM's base URL."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=CRM_CONN_ID)
    with with_retries(hook.get_conn()) as session:
        yield session, hook.base_url


@contextmanager
def clickhouse() -> Iterator[Client]:
    """A clickhouse-connect client: a ClickHouse server over HTTP, or the embedded chDB engine
    when the connection's extra says `{"client_kwargs": {"interface": "chdb", ...}}`. Closed on
    exit: the embedded engine admits one process at a time."""
    from airflow.providers.clickhousedb.hooks.clickhouse import ClickHouseHook

    client = ClickHouseHook(clickhouse_conn_id=CLICKHOUSE_CONN_ID).get_client()
    try:
        yield client
    finally:
        client.close()
