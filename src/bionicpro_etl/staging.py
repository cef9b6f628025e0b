"""A run's working tables in ClickHouse, through which the tasks hand data to each other.

Tables are named after the run, so a retry starts from scratch and two runs never mix; the load
drops them once the run has published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from bionicpro_etl.queries import sql

DATABASE = "bionicpro_staging"
# The kind of table each shard of the extract writes (partials_s0, partials_s1, ...).
PARTIALS_SHARD = "partials_s[0-9]+"
# How much `append` gathers before an insert: some 40 CRM pages of 1,000 items; a telemetry batch
# (a day's aggregates, megabytes) goes in alone, as before.
INSERT_BYTES = 4 * 2**20
# A staging table replaced or dropped goes at once, files and all. By default the engine keeps it
# 8 minutes, and the embedded one loads every such table again each time a process opens the
# store: after a day of quarter-hour runs, some 1,150 of them and 2 s of every open
# (docs/scaling.md).
DROP_AT_ONCE = {"database_atomic_wait_for_drop_and_detach_synchronously": 1}


@dataclass(frozen=True)
class Staging:
    key: str

    @classmethod
    def for_run(cls, run_id: str) -> Staging:
        return cls(hashlib.sha1(run_id.encode()).hexdigest()[:16])

    def _name(self, kind: str) -> str:
        return f"{kind}_{self.key}"

    @property
    def telemetry(self) -> str:
        return self._name("telemetry")

    @property
    def partials(self) -> str:
        return self._name("partials")

    def partials_shard(self, shard: int) -> str:
        return self._name(f"partials_s{shard}")

    @property
    def state_next(self) -> str:
        return self._name("state_next")

    def pattern(self, *kinds: str) -> str:
        """A regular expression of the run's tables of these kinds (regular expressions too)."""
        return f"^({'|'.join(kinds)})_{self.key}$"

    def recreate_partials_union(self, client: Client, model: str) -> None:
        """`partials` reads every shard's table (a Merge table), whatever their number; shard
        tables of an earlier attempt are dropped, and shard 0's stands empty until it runs.
        Each has the columns and keys of `model` (db.table)."""
        drop(
            client,
            *(
                name
                for (name,) in client.query(
                    "SELECT name FROM system.tables"
                    " WHERE database = {db:String} AND match(name, {shards:String})",
                    parameters={"db": DATABASE, "shards": self._shards_pattern()},
                ).result_rows
            ),
        )
        self.recreate_like(client, self.partials_shard(0), model)
        # The AS clause takes no identifier parameter; the name is ours (a hex run key), quoted.
        client.command(
            "CREATE OR REPLACE TABLE bionicpro_staging.{table:Identifier}"
            f" AS bionicpro_staging.{quote_identifier(self.partials_shard(0))}"
            " ENGINE = Merge(bionicpro_staging, {shards:String})",
            parameters={"table": self.partials, "shards": self._shards_pattern()},
            settings=DROP_AT_ONCE,
        )

    def _shards_pattern(self) -> str:
        return self.pattern(PARTIALS_SHARD)

    @property
    def crm_items(self) -> str:
        return self._name("crm_items")

    @property
    def crm_orders_next(self) -> str:
        return self._name("crm_orders_next")

    @property
    def changed_users(self) -> str:
        return self._name("changed_users")

    @property
    def crm_fields(self) -> str:
        return self._name("crm_fields")

    @property
    def report_rows(self) -> str:
        return self._name("report_rows")

    @property
    def published_days_next(self) -> str:
        return self._name("published_days_next")

    def tables(self) -> dict[str, str]:
        """The run's table names under the parameter names the SQL files use."""
        kinds = (
            "telemetry",
            "partials",
            "state_next",
            "crm_items",
            "crm_orders_next",
            "changed_users",
            "crm_fields",
            "report_rows",
        )
        return {kind: self._name(kind) for kind in kinds}

    def next_month(self, table: str, month: int) -> str:
        """Where the next version of one month of `table` is built before it is swapped in."""
        return self._name(f"{table}_{month}")

    def recreate(self, client: Client, table: str, ddl: str) -> None:
        """Create (or replace) one of the run's tables from `sql/clickhouse/ddl/<ddl>.sql`."""
        client.command(
            sql(f"clickhouse/ddl/{ddl}"), parameters={"table": table}, settings=DROP_AT_ONCE
        )

    def recreate_like(self, client: Client, table: str, model: str) -> None:
        """Create (or replace) one of the run's tables with the columns and keys of `model`
        (db.table), as a plain local MergeTree even where `model` is replicated: `REPLACE
        PARTITION` asks for the same keys, not the same engine."""
        partition_key, primary_key, sorting_key = _keys(client, model)
        partition = f" PARTITION BY ({partition_key})" if partition_key else ""
        # The AS clause and the keys take no parameters; the model and its keys are our own DDL's.
        client.command(
            f"CREATE OR REPLACE TABLE bionicpro_staging.{{table:Identifier}} AS {model}"
            f" ENGINE = MergeTree{partition} PRIMARY KEY ({primary_key}) ORDER BY ({sorting_key})",
            parameters={"table": table},
            settings=DROP_AT_ONCE,
        )

    def drop_all(self, client: Client) -> None:
        names = client.query(
            "SELECT name FROM system.tables"
            " WHERE database = {db:String} AND endsWith(name, {key:String})",
            parameters={"db": DATABASE, "key": f"_{self.key}"},
        ).result_rows
        drop(client, *(name for (name,) in names))


# The partition, primary and sorting keys of the store's tables, read once per process: they are
# our own DDL's, the same in every store (a run's statements are its fixed cost: docs/scaling.md).
_KEYS: dict[str, tuple[str, str, str]] = {}


def _keys(client: Client, model: str) -> tuple[str, str, str]:
    if model not in _KEYS:
        database, name = model.split(".")
        _KEYS[model] = client.query(
            "SELECT partition_key, primary_key, sorting_key FROM system.tables"
            " WHERE database = {database:String} AND name = {name:String}",
            parameters={"database": database, "name": name},
        ).result_rows[0]
    return _KEYS[model]


def sweep(client: Client, max_age_hours: float) -> int:
    """Drop the staging tables older than `max_age_hours`: those of runs that failed and were
    not retried to the end. They hold the CRM's personal data. Returns how many were dropped."""
    names = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}"
        " AND metadata_modification_time <= now() - toIntervalSecond({age:UInt64})",
        parameters={"db": DATABASE, "age": round(max_age_hours * 3600)},
    ).result_rows
    drop(client, *(name for (name,) in names))
    return len(names)


def drop(client: Client, *tables: str) -> None:
    """Drop the run's tables named, in one statement."""
    if tables:
        # DROP takes no list parameter; the names are ours, quoted.
        client.command(
            "DROP TABLE IF EXISTS "
            + ", ".join(f"{DATABASE}.{quote_identifier(table)}" for table in tables),
            settings=DROP_AT_ONCE,
        )


def append(client: Client, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """Insert Arrow batches as they come, small ones (CRM pages) put together up to
    INSERT_BYTES first: every insert makes a part, with its files and a merge to come. Memory
    stays that deep. Returns the row count."""
    rows = size = 0
    pending: list[pa.RecordBatch] = []
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            size += batch.nbytes
        if size >= INSERT_BYTES:
            rows += _insert(client, table, pending)
            pending, size = [], 0
    return rows + _insert(client, table, pending)


def _insert(client: Client, table: str, batches: list[pa.RecordBatch]) -> int:
    if batches:
        client.insert_arrow(f"{DATABASE}.{table}", pa.Table.from_batches(batches))
    return sum(batch.num_rows for batch in batches)


def count(client: Client, table: str) -> int:
    return client.query(
        "SELECT count() FROM bionicpro_staging.{table:Identifier}", parameters={"table": table}
    ).result_rows[0][0]
