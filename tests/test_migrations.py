"""Schema migrations: a store of the project's first release (its DDL from git history, kept as
tests/fixtures/first_release_store.sql) with data in it is brought up to the current version by
`create_data_mart_table`: it then equals a store created fresh, its data is still there, each
migration is recorded, and a second upgrade does nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bionicpro_etl import schema

FIRST_RELEASE = Path(__file__).parent / "fixtures" / "first_release_store.sql"

STORE = """
import json, sys
import clickhouse_connect
from bionicpro_etl import pipeline
from bionicpro_etl.queries import split

path, first_release = sys.argv[1:]
ch = clickhouse_connect.get_client(interface="chdb", path=path)
MART = "SELECT user_id, prosthesis_id, report_date, total_actions, status, run_id, loaded_at" \\
    " FROM bionicpro_reports.reports_data_mart ORDER BY user_id"
REJECTS = "SELECT run_id, rejected_at, reason, item FROM bionicpro_reports.crm_rejects"
out = {}
if first_release:
    for statement in split(open(first_release).read()):
        ch.command(statement)
    ch.command(
        "INSERT INTO bionicpro_reports.reports_data_mart"
        " (user_id, prosthesis_id, report_date, total_actions, status, run_id)"
        " VALUES (1, 'PROT-000001', '2024-01-31', 5, 'active', 'first release'),"
        " (2, 'PROT-000002', '2024-02-01', 7, 'unknown', 'first release')"
    )
    ch.command("INSERT INTO bionicpro_reports.crm_rejects (run_id, reason, item)"
               " VALUES ('first release', 'user_id < 1', '{}')")
    out["before"] = [ch.query(MART).result_rows, ch.query(REJECTS).result_rows]
out["first"] = pipeline.create_data_mart_table(ch).migrations
out["second"] = pipeline.create_data_mart_table(ch).migrations
out["after"] = [ch.query(MART).result_rows, ch.query(REJECTS).result_rows]
out["recorded"] = ch.query(
    "SELECT version, name FROM bionicpro_reports.schema_migrations FINAL ORDER BY version"
).result_rows
out["tables"] = dict(ch.query(
    "SELECT concat(database, '.', name), create_table_query FROM system.tables"
    " WHERE database IN ('bionicpro_reports', 'bionicpro_staging')"
).result_rows)
ch.close()
print(json.dumps(out, default=str))
"""


def store(path: Path, first_release: str = "") -> dict:
    """In its own process: chDB admits one data path per process, and the session's is taken."""
    done = subprocess.run(
        [sys.executable, "-c", STORE, str(path), first_release],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return store(tmp_path_factory.mktemp("fresh") / "ch")


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return store(tmp_path_factory.mktemp("upgraded") / "ch", str(FIRST_RELEASE))


def test_the_first_release_store_is_upgraded_to_the_current_one(fresh, upgraded) -> None:
    assert "schema_migrations" not in FIRST_RELEASE.read_text()
    assert upgraded["tables"] == fresh["tables"]
    tables = {"reports_data_mart", "crm_rejects", "crm_orders", "etl_runs", "schema_migrations"}
    assert {f"bionicpro_reports.{t}" for t in tables} <= upgraded["tables"].keys()
    every = [f"{m.version}: {m.name}" for m in schema.migrations()]
    assert every and upgraded["first"] == every


def test_the_data_of_the_first_release_survives_the_upgrade(upgraded) -> None:
    assert upgraded["after"] == upgraded["before"]
    assert len(upgraded["after"][0]) == 2 and len(upgraded["after"][1]) == 1


def test_each_migration_is_recorded_once_and_a_second_upgrade_does_nothing(fresh, upgraded):
    every = [[m.version, m.name] for m in schema.migrations()]
    for result in (fresh, upgraded):
        assert result["recorded"] == every
        assert result["second"] == []


def test_migration_numbers_are_unique_and_every_migration_is_an_alter() -> None:
    versions = [m.version for m in schema.migrations()]
    assert versions == sorted(set(versions))
    assert all(s.startswith("ALTER TABLE bionicpro_reports.") for m in schema.migrations()
               for s in m.statements)  # fmt: skip


def test_a_migration_runs_on_every_node_and_on_the_read_tables_distributed_twin() -> None:
    add = schema.Migration(
        99,
        "a column",
        (
            "ALTER TABLE bionicpro_reports.reports_data_mart ADD COLUMN IF NOT EXISTS x UInt8",
            "ALTER TABLE bionicpro_reports.etl_runs MODIFY TTL toDateTime(finished_at) + INTERVAL 1 YEAR",
        ),
    )
    assert add.on("") == list(add.statements)
    assert add.on("c") == [
        "ALTER TABLE bionicpro_reports.reports_data_mart ON CLUSTER `c` ADD COLUMN IF NOT EXISTS x UInt8",
        "ALTER TABLE bionicpro_reports.reports_data_mart_all ON CLUSTER `c` ADD COLUMN IF NOT EXISTS x UInt8",
        "ALTER TABLE bionicpro_reports.etl_runs ON CLUSTER `c`"
        " MODIFY TTL toDateTime(finished_at) + INTERVAL 1 YEAR",
    ]
    with pytest.raises(ValueError, match="only ALTER TABLE"):
        schema.Migration(98, "not an alter", ("DROP TABLE bionicpro_reports.x",)).on("c")
