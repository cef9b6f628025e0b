"""The DAG's Airflow callbacks. The DAG file imports this module when parsed, so it imports
nothing heavy itself: the clients and the pipeline are loaded only when a callback runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def log_failure(context: Mapping[str, Any]) -> None:
    """A task failed for good, so the run log says so (the row carries no watermark, so nothing
    advances)."""
    from bionicpro_etl import clients, runlog
    from bionicpro_etl.run import Run

    with clients.clickhouse() as client:
        runlog.record_failure(
            client, Run.of(context), context["ti"].task_id, context.get("exception")
        )
