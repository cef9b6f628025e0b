"""ClickHouse cluster mode (`BIONICPRO_CLICKHOUSE_CLUSTER`): the shared tables on every node.

The single-node DDL files stay the one source of truth (`scripts/create_data_mart.sql` is one of
them). On a cluster, each CREATE in `bionicpro_reports` runs ON CLUSTER, each MergeTree engine
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

DATABASE = "bionicpro_reports"
# The tables that reports and analysts read, each given a Distributed table for reads.
READ_TABLES = ("reports_data_mart", "user_monthly_summary")

_CREATE = re.compile(rf"^(CREATE (?:DATABASE|TABLE) IF NOT EXISTS {DATABASE}\b(?:\.\w+)?)", re.M)
_ENGINE = re.compile(r"^(ENGINE = )(\w*MergeTree)\b", re.M)


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
    """`python -m bionicpro_etl.cluster NAME`: the DDL for cluster NAME, for clickhouse-client."""
    import argparse

    from bionicpro_etl import load  # load builds on this module

    parser = argparse.ArgumentParser(
        prog="python -m bionicpro_etl.cluster", description=main.__doc__
    )
    parser.add_argument("cluster", help="a cluster of the servers' remote_servers")
    for statement in load.ddl(parser.parse_args(argv).cluster):
        print(f"{statement};\n")


if __name__ == "__main__":
    main()
