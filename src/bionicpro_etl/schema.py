"""The store's schema: the DDL that `create_data_mart_table` applies, for one server or a cluster.

The single-node DDL files (sql/clickhouse/ddl/) are the one source of truth
(`scripts/create_data_mart.sql` is one of them). In cluster mode (`BIONICPRO_CLICKHOUSE_CLUSTER`) On a cluster, each CREATE in `bionicpro_reports` runs ON CLUSTER, each MergeTree engine
becomes its Replicated twin (with the server's default replica path and name), and the tables
people read get a `Distributed` table beside them (`<table>_all`) that spreads reads over the
replicas. The mart is not sharded: a publish is one `REPLACE PARTITION` per month, which a
replicated table applies atomically on every replica, and which would not be atomic across
shards. The staging database stays local to the node the pipeline talks to: its tables are one
run's scratch space, and the publish moves their parts into the replicated tables.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from bionicpro_etl.config import settings
from bionicpro_etl.queries import statements

DATABASE = "bionicpro_reports"
# The tables that reports and analysts read, each given a Distributed table for reads.
READ_TABLES = ("reports_data_mart", "user_monthly_summary")
# sql/clickhouse/ddl/<name>.sql, in the order they are applied.
DDL = (
    "create_data_mart",
    "create_crm_rejects",
    "create_crm_orders",
    "create_etl_runs",
    "create_quality_checks",
    "create_user_monthly_summary",
    "create_staging_database",
)

_CREATE = re.compile(rf"^(CREATE (?:DATABASE|TABLE) IF NOT EXISTS {DATABASE}\b(?:\.\w+)?)", re.M)
_ENGINE = re.compile(r"^(ENGINE = )(\w*MergeTree)\b", re.M)


def create(client: Client, cluster_name: str | None = None) -> None:
    """The same DDL as scripts/create_data_mart.sql, plus the pipeline's own tables; on every node
    of `cluster_name` (default: `BIONICPRO_CLICKHOUSE_CLUSTER`) when there is one."""
    for statement in ddl(settings().clickhouse_cluster if cluster_name is None else cluster_name):
        client.command(statement)


def ddl(cluster_name: str) -> list[str]:
    single_node = [s for name in DDL for s in statements(f"clickhouse/ddl/{name}")]
    return on_cluster(single_node, cluster_name) if cluster_name else single_node


def on_cluster(statements: list[str], cluster: str) -> list[str]:
    """The single-node DDL `statements`, for every node of `cluster`; then the read tables."""
    name = quote_identifier(cluster)
    shared = [_replicated(s, name) if _CREATE.search(s) else s for s in statements]
    return shared + [read_table(table, cluster) for table in READ_TABLES]


def _replicated(statement: str, cluster: str) -> str:
    statement = _CREATE.sub(rf"\1 ON CLUSTER {cluster}", statement, count=1)
    return _ENGINE.sub(r"\1Replicated\2", statement, count=1)


def read_table(table: str, cluster: str) -> str:
    """`<table>_all`: reads `table` through any node of `cluster`, spread over its replicas."""
    name = quote_identifier(cluster)
    return (
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table}_all ON CLUSTER {name}"
        f" AS {DATABASE}.{table}"
        f" ENGINE = Distributed({name}, {DATABASE}, {table})"
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m bionicpro_etl.schema NAME`: the DDL for cluster NAME, for clickhouse-client."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bionicpro_etl.schema", description=main.__doc__
    )
    parser.add_argument("cluster", help="a cluster of the servers' remote_servers")
    for statement in ddl(parser.parse_args(argv).cluster):
        print(f"{statement};\n")


if __name__ == "__main__":
    main()
