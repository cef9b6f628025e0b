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


async def deadline_missed(context: Mapping[str, Any], **_: Any) -> None:
    """The DAG's Deadline Alert (`BIONICPRO_FRESHNESS_DEADLINE_SECONDS` after a run was queued):
    Airflow's triggerer calls this when the run has not finished by then. It asks the run's task
    states (the triggerer may) and tells the notifiers (notify.deadline_missed)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    from bionicpro_etl import notify

    dag_run = context["dag_run"]
    states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=dag_run["dag_id"], run_ids=[dag_run["dag_run_id"]]
    )
    await sync_to_async(notify.deadline_missed)(context, states.get(dag_run["dag_run_id"], {}))
