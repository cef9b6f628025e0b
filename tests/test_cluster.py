"""ClickHouse cluster mode: the shared tables' DDL for every node, checked by ClickHouse's own
parser, and the Distributed read tables reading the mart through a cluster definition in chDB.

What cannot be run here: chDB has no distributed DDL queue (it refuses ON CLUSTER) and no
Keeper (replicated tables stay read-only), and no ClickHouse server can be installed on this
machine. So replication itself is ClickHouse's to prove; these tests prove what the project
sends it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlparse
from clickhouse_connect.driver.client import Client

from bionicpro_etl import schema

CREATE = re.compile(r"^CREATE (?:DATABASE|TABLE) IF NOT EXISTS (\w+(?:\.\w+)?)", re.M)


def created(statements: list[str]) -> list[str]:
    return [m.group(1) for s in statements for m in [CREATE.search(s)] if m]


def test_every_shared_table_is_created_replicated_on_every_node() -> None:
    single, clustered = schema.ddl(""), schema.ddl("reports cluster")
    shared = [s for s in clustered if "bionicpro_reports" in created([s])[0]]

    assert created(clustered) == [
        *created(single),
        "bionicpro_reports.reports_data_mart_all",
        "bionicpro_reports.user_monthly_summary_all",
        "bionicpro_reports.published_days_all",
    ]
    assert all(" ON CLUSTER `reports cluster`" in s for s in shared)
    tables = [s for s in shared if "CREATE TABLE" in s and "Distributed" not in s]
    assert len(tables) == 9
    assert all(re.search(r"^ENGINE = Replicated\w*MergeTree$", s, re.M) for s in tables)
    # The keys REPLACE PARTITION depends on are the single-node DDL's, untouched.
    mart = next(s for s in clustered if "reports_data_mart ON CLUSTER" in s)
    assert "PARTITION BY toYYYYMM(report_date)" in mart
    assert "ORDER BY (user_id, report_date, prosthesis_id)" in mart


def test_the_staging_database_stays_on_the_pipelines_node() -> None:
    staging = [s for s in schema.ddl("c") if "bionicpro_staging" in s]
    assert staging and all("ON CLUSTER" not in s for s in staging)


def test_clickhouse_parses_every_statement_of_make_ddl(
    ch: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    schema.main(["bionicpro"])
    printed = [s for s in sqlparse.split(capsys.readouterr().out) if s.strip()]
    assert len(printed) == len(schema.script("bionicpro"))
    assert len(schema.ddl("bionicpro")) == 14
    for statement in printed:
        formatted = ch.query(
            "SELECT formatQuery({q:String})", parameters={"q": statement.rstrip().rstrip(";")}
        )
        assert formatted.result_rows[0][0].startswith(("CREATE", "ALTER"))


READS_THROUGH_THE_CLUSTER = """
import sys
import clickhouse_connect
from bionicpro_etl import schema

path, config = sys.argv[1:]
ch = clickhouse_connect.get_client(interface="chdb", path=path, chdb_options={"config-file": config})
schema.create(ch, cluster_name="")
ch.command(
    "INSERT INTO bionicpro_reports.reports_data_mart"
    " (user_id, prosthesis_id, report_date, total_actions, status)"
    " VALUES (1, 'PROT-000001', '2024-01-31', 5, 'active'), (2, 'PROT-000002', '2024-02-01', 7, 'unknown')"
)
for table in schema.READ_TABLES:
    # chDB refuses ON CLUSTER (it has no distributed DDL queue): the rest of the statement runs.
    ch.command(schema.read_table(table, "bionicpro").replace(" ON CLUSTER `bionicpro`", ""))
query = "SELECT user_id, report_date, total_actions FROM bionicpro_reports.{} ORDER BY user_id"
direct = ch.query(query.format("reports_data_mart")).result_rows
through = ch.query(query.format("reports_data_mart_all")).result_rows
engine = ch.query(
    "SELECT engine FROM system.tables WHERE database = 'bionicpro_reports' AND name = 'reports_data_mart_all'"
).result_rows
print(direct == through, len(through), engine[0][0])
ch.close()
"""


def test_the_distributed_table_reads_the_mart_through_the_cluster(tmp_path: Path) -> None:
    """In its own process: chDB admits one data path per process, and the session's is taken."""
    config = tmp_path / "config.xml"
    config.write_text(
        textwrap.dedent(
            """\
            <clickhouse>
                <tcp_port>9000</tcp_port>
                <remote_servers><bionicpro><shard><replica>
                    <host>localhost</host><port>9000</port>
                </replica></shard></bionicpro></remote_servers>
            </clickhouse>
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", READS_THROUGH_THE_CLUSTER, str(tmp_path / "ch"), str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "2", "Distributed"]


def test_read_table_names_the_cluster_quoted() -> None:
    statement = schema.read_table("reports_data_mart", "a`b")
    assert "ON CLUSTER `a\\`b`" in statement
    assert "Distributed(`a\\`b`, bionicpro_reports, reports_data_mart)" in statement


@pytest.mark.parametrize("cluster", [r"re\1al", r"a\g<0>b", "c\\d", "back`tick"])
def test_a_cluster_name_with_backslashes_reaches_clickhouse_as_it_is(
    ch: Client, cluster: str
) -> None:
    """The name is quoted once and put in as it is: ClickHouse's parser reads the very name back
    from every statement of `make ddl` (a template in re.sub would read `\\1` as a group)."""
    for statement in schema.script(cluster):
        if "ON CLUSTER" not in statement:
            continue
        formatted = ch.query(
            "SELECT formatQuery({q:String})", parameters={"q": statement.rstrip().rstrip(";")}
        ).result_rows[0][0]
        named = re.search(r"ON CLUSTER (`(?:[^`\\]|\\.)*`|\w+)", formatted)
        assert named, formatted
        name = named[1]
        if name.startswith("`"):
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
        assert name == cluster, statement
