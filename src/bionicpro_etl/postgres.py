"""The pipeline's PostgreSQL sessions: every wait bounded (contract section 7).

Each session (psycopg for the plan, ADBC for the extract; both are libpq underneath) connects
within `pg_connect_timeout_seconds`, runs no statement longer than `pg_statement_timeout_seconds`
and waits for no lock longer than `pg_lock_timeout_seconds`, so a hung or locked source becomes
a clear failure that Airflow retries, never a stuck night. A connection's own settings win: an
explicit `connect_timeout`, or `-c statement_timeout=...` in its `options`.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bionicpro_etl.config import Settings


def bounded(dsn: str, config: Settings) -> str:
    """`dsn` (a libpq conninfo or URI) as a conninfo with the pipeline's timeouts."""
    params = conninfo_to_dict(dsn)
    params.setdefault("connect_timeout", config.pg_connect_timeout_seconds)
    ours = (
        f"-c statement_timeout={config.pg_statement_timeout_seconds}s"
        f" -c lock_timeout={config.pg_lock_timeout_seconds}s"
    )
    # The server applies its options in order, so the connection's own come last and win.
    params["options"] = f"{ours} {params['options']}" if params.get("options") else ours
    return make_conninfo(**params)
