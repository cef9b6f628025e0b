"""The store's schema: the DDL that `create_data_mart_table` applies, for one server or a cluster,
and the migrations that bring a store of any earlier version up to it.

The single-node DDL files (sql/clickhouse/ddl/) are the one source of truth
(`scripts/create_data_mart.sql` is one of them). In cluster mode (`BIONICPRO_CLICKHOUSE_CLUSTER`) each CREATE in `bionicpro_reports` runs ON CLUSTER, each MergeTree engine
becomes its Replicated twin (with the server's default replica path and name), and the tables
people read get a `Distributed` table beside them (`<table>_all`) that spreads reads over the
replicas. The mart is not sharded: a publish is one `REPLACE PARTITION` per month, which a
replicated table applies atomically on every replica, and which would not be atomic across
shards. The staging database stays local to the node the pipeline talks to: its tables are one
run's scratch space, and the publish moves their parts into the replicated tables.

Migrations. Each DDL file holds a table's current form (`CREATE ... IF NOT EXISTS`), then the
migrations of that table, each under a line `-- migration <number>: <what it does>`. `create`
applies every file's current form first (a fresh store is born current; a table an older store
lacks is created), then every migration not yet recorded in `schema_migrations`, in order of the
numbers (unique across the files), recording each right after it ran. So each migration must
also hold on a table that already has its change (`IF [NOT] EXISTS`, a comment, a TTL). On a
cluster a migration's `ALTER` runs `ON CLUSTER`, and a column change of a read table is made on
its `Distributed` table too. docs/development.md says how to add one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import settings
from bionicpro_etl.queries import split, sql

DATABASE = "bionicpro_reports"
# The telemetry's partial aggregates per day, kept between runs (ddl/create_telemetry_state.sql).
STATE = f"{DATABASE}.telemetry_state"
# The tables that reports and analysts read, each given a Distributed table for reads.
READ_TABLES = ("reports_data_mart", "user_monthly_summary", "published_days")
# sql/clickhouse/ddl/<name>.sql, in the order they are applied.
DDL = (
    "create_data_mart",
    "create_schema_migrations",
    "create_crm_rejects",
    "create_crm_orders",
    "create_etl_runs",
    "create_telemetry_state",
    "create_quality_checks",
    "create_user_monthly_summary",
    "create_published_days",
    "create_staging_database",
)

MIGRATIONS = f"{DATABASE}.schema_migrations"
MART = f"{DATABASE}.reports_data_mart"
# The mart's columns that say which run wrote a row, not what the report says.
RUN_COLUMNS = ("loaded_at", "run_id")

_CREATE = re.compile(rf"^(CREATE (?:DATABASE|TABLE) IF NOT EXISTS {DATABASE}\b(?:\.\w+)?)", re.M)
_ALTER = re.compile(
    rf"^(ALTER TABLE {DATABASE}\.(\w+))(?P<rest>\s+(?:ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN)?"
)
_ENGINE = re.compile(r"^(ENGINE = )(\w*MergeTree)\b", re.M)
_TABLE = re.compile(rf"^CREATE TABLE IF NOT EXISTS ({DATABASE}\.\w+)", re.M)
_MIGRATION = re.compile(r"^-- migration (\d+): (.+)$", re.M)
_COLUMN = re.compile(
    r"^    (?P<name>\w+)\s+(?P<type>.+?)(?:\s+DEFAULT\s+.+?)?"
    r"(?:\s+COMMENT\s+'(?P<comment>(?:[^']|'')*)')?,?$"
)


@dataclass(frozen=True)
class Column:
    """A column of the mart as its DDL describes it: its COMMENT is its meaning."""

    name: str
    type: str
    comment: str

    @property
    def is_float(self) -> bool:
        return "Float" in self.type


@cache
def mart_columns() -> tuple[Column, ...]:
    """The mart's columns, in order, from its DDL file (the one description of them)."""
    create = next(s for s in split(_current("create_data_mart")) if s.startswith("CREATE TABLE"))
    body = create[create.index("(\n") + 2 : create.index("\n)")]
    return tuple(
        Column(m["name"], m["type"], (m["comment"] or "").replace("''", "'"))
        for m in map(_COLUMN.match, body.splitlines())
        if m
    )


def report_columns() -> tuple[Column, ...]:
    """The mart's columns that a report reads: all but RUN_COLUMNS."""
    return tuple(c for c in mart_columns() if c.name not in RUN_COLUMNS)


@dataclass(frozen=True)
class Migration:
    """A step from an earlier version of the store: its number, what it does, its statements."""

    version: int
    name: str
    statements: tuple[str, ...]

    def on(self, cluster: str) -> list[str]:
        """The statements for a single server (`cluster` empty) or for every node of `cluster`."""
        if not cluster:
            return list(self.statements)
        name = quote_identifier(cluster)
        clustered = []
        for statement in self.statements:
            alter = _ALTER.search(statement)
            if alter is None:
                raise ValueError(
                    f"migration {self.version}: only ALTER TABLE {DATABASE}.* runs on a cluster"
                )
            clustered.append(_on_cluster(_ALTER, statement, name))
            if alter.group(2) in READ_TABLES and alter.group(3):
                mirror = statement.replace(alter.group(1), f"{alter.group(1)}_all", 1)
                clustered.append(_on_cluster(_ALTER, mirror, name))
        return clustered


def create(client: Client, cluster_name: str | None = None) -> list[str]:
    """Bring the store up to date: the same DDL as scripts/create_data_mart.sql plus the
    pipeline's own tables, then the migrations it has not applied yet; on every node of
    `cluster_name` (default: `BIONICPRO_CLICKHOUSE_CLUSTER`) when there is one. Returns the
    migrations applied (`<number>: <what>`), none when the store was already current."""
    cluster = settings().clickhouse_cluster if cluster_name is None else cluster_name
    for statement in ddl(cluster):
        client.command(statement)
    applied = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS}").result_rows}
    done = []
    for migration in migrations():
        if migration.version in applied:
            continue
        for statement in migration.on(cluster):
            client.command(statement)
        client.insert(
            MIGRATIONS, [[migration.version, migration.name]], column_names=["version", "name"]
        )
        done.append(f"{migration.version}: {migration.name}")
    return done


def ddl(cluster_name: str) -> list[str]:
    """The tables' current form, for one server (`cluster_name` empty) or a cluster."""
    single_node = [s for name in DDL for s in split(_current(name))]
    return on_cluster(single_node, cluster_name) if cluster_name else single_node


@cache
def tables() -> tuple[str, ...]:
    """The store's tables (`database.table`) that `create` makes, as their DDL files name them."""
    return tuple(table for name in DDL for table in _TABLE.findall(_current(name)))


def _current(name: str) -> str:
    """A DDL file's current form: what comes before its first migration."""
    return _MIGRATION.split(sql(f"clickhouse/ddl/{name}"), maxsplit=1)[0]


@cache
def migrations() -> tuple[Migration, ...]:
    """Every DDL file's migrations, in order of their numbers."""
    found = []
    for name in DDL:
        _, *parts = _MIGRATION.split(sql(f"clickhouse/ddl/{name}"))
        for version, title, body in zip(parts[::3], parts[1::3], parts[2::3], strict=True):
            found.append(Migration(int(version), title.strip(), split(body)))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"migration numbers must be unique across the DDL files: {versions}")
    return tuple(found)


def on_cluster(statements: list[str], cluster: str) -> list[str]:
    """The single-node DDL `statements`, for every node of `cluster`; then the read tables."""
    name = quote_identifier(cluster)
    shared = [_replicated(s, name) if _CREATE.search(s) else s for s in statements]
    return shared + [read_table(table, cluster) for table in READ_TABLES]


def _replicated(statement: str, cluster: str) -> str:
    return _ENGINE.sub(r"\1Replicated\2", _on_cluster(_CREATE, statement, cluster), count=1)


def _on_cluster(pattern: re.Pattern[str], statement: str, cluster: str) -> str:
    """`ON CLUSTER cluster` (a quoted name) after the statement's head that `pattern` finds.
    A function, not a template: a quoted name may hold a backslash, which a template would read
    as a group reference (`\\1`) or an escape."""
    return pattern.sub(
        lambda m: f"{m[1]} ON CLUSTER {cluster}{m.groupdict().get('rest') or ''}",
        statement,
        count=1,
    )


def read_table(table: str, cluster: str) -> str:
    """`<table>_all`: reads `table` through any node of `cluster`, spread over its replicas."""
    name = quote_identifier(cluster)
    return (
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table}_all ON CLUSTER {name}"
        f" AS {DATABASE}.{table}"
        f" ENGINE = Distributed({name}, {DATABASE}, {table})"
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m bionicpro_etl.schema NAME`: the DDL for cluster NAME, for clickhouse-client,
    and every migration (each holds on a store that has it already)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bionicpro_etl.schema", description=main.__doc__
    )
    parser.add_argument("cluster", help="a cluster of the servers' remote_servers")
    cluster = parser.parse_args(argv).cluster
    for statement in script(cluster):
        print(f"{statement};\n")


def script(cluster: str) -> list[str]:
    """What `create` sends to a store of the first release: the DDL, then every migration."""
    return [*ddl(cluster), *(s for m in migrations() for s in m.on(cluster))]


if __name__ == "__main__":
    main()
