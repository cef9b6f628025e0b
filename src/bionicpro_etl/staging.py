"""A run's working tables in ClickHouse, through which the tasks hand data to each other.

Tables are named after the run, so a retry starts from scratch and two runs never mix; the load
drops them once the run has published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from bionicpro_etl.queries import sql

DATABASE = "bionicpro_staging"


@dataclass(frozen=True)
class Staging:
    key: str

    @classmethod
    def for_run(cls, run_id: str) -> Staging:
        return cls(hashlib.sha1(run_id.encode()).hexdigest()[:16])

    @property
    def telemetry(self) -> str:
        return f"telemetry_{self.key}"

    @property
    def crm_items(self) -> str:
        return f"crm_items_{self.key}"

    @property
    def report_rows(self) -> str:
        return f"report_rows_{self.key}"

    def mart_month(self, month: int) -> str:
        return f"mart_{month}_{self.key}"

    def recreate(self, client: Client, table: str, ddl: str) -> None:
        """Drop and create one of the run's tables from `sql/<ddl>.sql`."""
        drop(client, table)
        client.command(sql(ddl), parameters={"table": table})

    def recreate_like_mart(self, client: Client, table: str) -> None:
        drop(client, table)
        client.command(
            "CREATE TABLE bionicpro_staging.{table:Identifier} AS bionicpro_reports.reports_data_mart",
            parameters={"table": table},
        )

    def drop_all(self, client: Client) -> None:
        names = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND endsWith(name, {key:String})",
            parameters={"db": DATABASE, "key": f"_{self.key}"},
        ).result_rows
        for (name,) in names:
            drop(client, name)


def drop(client: Client, table: str) -> None:
    client.command(
        "DROP TABLE IF EXISTS bionicpro_staging.{table:Identifier}", parameters={"table": table}
    )


def append(client: Client, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """Insert Arrow batches as they come (memory stays one batch deep); returns the row count."""
    rows = 0
    for batch in batches:
        if batch.num_rows:
            client.insert_arrow(f"{DATABASE}.{table}", pa.Table.from_batches([batch]))
            rows += batch.num_rows
    return rows


def count(client: Client, table: str) -> int:
    return client.query(
        "SELECT count() FROM bionicpro_staging.{table:Identifier}", parameters={"table": table}
    ).result_rows[0][0]
