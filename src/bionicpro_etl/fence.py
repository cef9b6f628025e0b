"""One publication at a time, and none from a stale plan: why runs that overlap (a backfill beside
the nightly run, two backfills, `dags test` during the night) end as if they had run one after the
other (contract section 7).

Each publication has a number: the run log's `publication` (0 on rows from before the fence).
A plan remembers the number of the latest publication when it was made (`Plan.publication`). The
load takes a PostgreSQL advisory lock on the telemetry database, held by its session until the
run log row is written, and under it compares: the same number means nobody published since the
run planned, so its staged rows, watermark and CRM dimension are the newest and it publishes them
as the next number. Another number means another run published in between: what this run staged
may be older than the mart (a day rebuilt from an older snapshot, a CRM dimension before a full
refresh), so it plans, extracts and transforms again under the lock, from what is published now,
and publishes that. Nothing stale is ever published, the watermark never passes arrivals that
were not, and no run waits longer than one other run's load.

Why these choices: ClickHouse has no lock and no conditional write a publish could be checked
by, so a fence number alone could be checked and passed by two loads at once; the lock makes the
check and the publish one step. An advisory lock lives in a session, so a load that dies lets it
go at once (no lease to expire, no stale holder), and the pipeline already has a session on the
telemetry database (a hot standby grants advisory locks too). Airflow's own limits
(`max_active_tis_per_dag=1` on the load) do not bind backfills run from the CLI or `dags test`.
Planning again inside the load, rather than failing the run, keeps a backfill from failing
because the nightly run published first; it costs one more plan and extract, and only then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client

from bionicpro_etl import postgres
from bionicpro_etl.config import Settings

# The advisory lock's key (pg_advisory_lock takes any bigint): "bionicpro" in ASCII, cut to 63 bits.
LOCK_KEY = int.from_bytes(b"bionicpro", "big") & (2**63 - 1)


class PublishLockTimeout(RuntimeError):
    """Another run held the publication lock longer than `publish_lock_timeout_seconds`."""


class LockLost(RuntimeError):
    """The lock's session ended before the run log row was written."""


def latest(client: Client) -> int:
    """The number of the latest publication; 0 before the first one."""
    return client.query(
        "SELECT max(publication) FROM bionicpro_reports.etl_runs WHERE status = 'success'"
    ).result_rows[0][0]


@contextmanager
def publishing(dsn: str, config: Settings) -> Iterator[Held]:
    """Hold the publication lock: wait for a run that is publishing, up to the timeout."""
    wait = f"{config.publish_lock_timeout_seconds}s"
    with psycopg.connect(postgres.bounded(dsn, config), autocommit=True) as conn:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (wait, wait),
        )
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as error:
            raise PublishLockTimeout(
                f"another run has been publishing for more than {wait}"
                f" (advisory lock {LOCK_KEY} on the telemetry database, see pg_locks);"
                " nothing was published"
            ) from error
        yield Held(conn)
    # Closing the session releases the lock, also when the load fails.


class Held:
    """The publication lock, held by a session."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def check(self) -> None:
        """Raise unless the lock is still held: its session may have been cut (a restart, an
        `idle_session_timeout`), and then another run may be publishing."""
        try:
            (held,) = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid() AND granted"
            ).fetchone()
        except psycopg.Error as error:
            raise LockLost(f"the publication lock's session ended: {error}") from error
        if not held:
            raise LockLost("the publication lock is no longer held")
