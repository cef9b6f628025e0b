"""The pipeline's PostgreSQL sessions: every wait bounded (contract section 7).

Each session (psycopg for the plan, ADBC for the extract; both are libpq underneath) connects
within `pg_connect_timeout_seconds`, runs no statement longer than `pg_statement_timeout_seconds`
and waits for no lock longer than `pg_lock_timeout_seconds`, so a hung or locked source becomes
a clear failure that Airflow retries, never a stuck night. A connection's own settings win: an
explicit `connect_timeout`, or `-c statement_timeout=...` in its `options`. The sessions that
aggregate telemetry also keep PostgreSQL's default work_mem (`aggregating`).
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bionicpro_etl.config import Settings


def bounded(dsn: str, config: Settings, *settings: str) -> str:
    """`dsn` (a libpq conninfo or URI) as a conninfo with the pipeline's timeouts, and the
    session `settings` (`name=value`) given."""
    params = conninfo_to_dict(dsn)
    params.setdefault("connect_timeout", config.pg_connect_timeout_seconds)
    ours = " ".join(
        f"-c {setting}"
        for setting in (
            f"statement_timeout={config.pg_statement_timeout_seconds}s",
            f"lock_timeout={config.pg_lock_timeout_seconds}s",
            *settings,
        )
    )
    # The server applies its options in order, so the connection's own come last and win.
    params["options"] = f"{ours} {params['options']}" if params.get("options") else ours
    return make_conninfo(**params)


# The work_mem of the sessions that aggregate telemetry: PostgreSQL's default, whatever the server's.
AGGREGATE_WORK_MEM = "4MB"


def aggregating(dsn: str, config: Settings) -> str:
    """`bounded`, for the sessions that aggregate telemetry (telemetry_partials.sql), with the
    work_mem that the benchmark measures fastest for it, whatever the server's. Each parallel
    worker sorts its share of the rows and groups it; with more memory the sort gets slower, and
    once the groups look small enough to hash, PostgreSQL hashes them all in one process instead
    (docs/benchmarks.md, "Source side")."""
    return bounded(dsn, config, f"work_mem={AGGREGATE_WORK_MEM}")
