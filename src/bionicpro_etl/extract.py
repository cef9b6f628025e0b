"""Extractors: plain functions that read a source and yield batches; they never write.

Telemetry is aggregated inside PostgreSQL and streamed out as Arrow record batches (ADBC, COPY
binary under the hood), so no per-row Python objects exist. The CRM is read page by page over
HTTP and each item is validated; bad items become rejects with a reason, never guesses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import adbc_driver_postgresql.dbapi as adbc_pg
import pyarrow as pa
import requests
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, ValidationError
from urllib3.exceptions import MaxRetryError

from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import day_bounds

CUSTOMERS_PATH = "/api/v1/customers"


def telemetry_batches(
    dsn: str, days: Iterable[date], tz: ZoneInfo, *, shard: int = 0, shards: int = 1
) -> Iterator[pa.RecordBatch]:
    """Per (user, prosthesis, day) aggregates of the report days (of one shard of the users),
    one query per day, each a BRIN scan of the day's event_time range: the plan that (a) in
    docs/benchmarks.md measures. Over a range of days PostgreSQL expects a group per row and may
    aggregate in one process, spilling to disk: twice as slow at a million events a day."""
    with adbc_pg.connect(dsn) as conn, conn.cursor() as cur:
        for day in sorted(set(days)):
            start, end = day_bounds(day, tz)
            cur.execute(
                sql("postgres/telemetry_daily"), parameters=(start, end, tz.key, shards, shard)
            )
            yield from cur.fetch_record_batch()


class CrmError(RuntimeError):
    """The CRM could not be read as the contract says; the run must not go on without it."""


NonBlank = Annotated[str, Field(pattern=r"\S")]


class CrmItem(BaseModel):
    """One CRM item (an order) as contract section 4 defines it."""

    model_config = ConfigDict(extra="ignore")

    user_id: Annotated[StrictInt, Field(ge=1)]
    email: str
    first_name: str
    last_name: str
    prosthesis_id: NonBlank
    order_date: date | None
    status: str
    updated_at: AwareDatetime


CRM_ITEMS_SCHEMA = pa.schema(
    [
        ("seq", pa.uint64()),
        ("user_id", pa.uint64()),
        ("email", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("prosthesis_id", pa.string()),
        ("order_date", pa.date32()),
        ("status", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class CrmPage:
    """The valid items of one page as an Arrow batch, and the rejected ones with their reason."""

    items: pa.RecordBatch
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (reason, item as JSON)


def crm_pages(
    session: requests.Session,
    base_url: str,
    *,
    page_size: int,
    updated_since: datetime | None = None,
    timeout: tuple[float, float] = (10.0, 60.0),
) -> Iterator[CrmPage]:
    """Walk the CRM listing with its cursor until `next_cursor` is null."""
    url = base_url.rstrip("/") + CUSTOMERS_PATH
    params: dict[str, Any] = {"limit": page_size}
    if updated_since is not None:
        params["updated_since"] = updated_since.isoformat()
    seen_cursors: set[str] = set()
    seq = 0
    while True:
        payload = _listing(_get(session, url, params, timeout))
        page = validate_items(payload["items"], first_seq=seq)
        seq += len(payload["items"])
        yield page
        cursor = payload["next_cursor"]
        if cursor is None:
            return
        if cursor in seen_cursors:
            raise CrmError(f"CRM {url} repeated the cursor {cursor!r}; stopping instead of looping")
        seen_cursors.add(cursor)
        params["cursor"] = cursor


def _get(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    timeout: tuple[float, float],
    *,
    attempts: int = 4,
    backoff: float = 0.5,
) -> requests.Response:
    """One page. The session's urllib3 policy retries what fails before a response starts; a
    connection dropped in the middle of a body only shows here, and is retried the same bounded
    way (a fault that urllib3 already retried to exhaustion is not retried again)."""
    attempt = 1
    while True:
        try:
            return session.get(url, params=params, timeout=timeout)
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ConnectionError,
        ) as exc:
            exhausted = bool(exc.args) and isinstance(exc.args[0], MaxRetryError)
            if exhausted or attempt == attempts:
                raise CrmError(f"CRM {url} could not be read: {exc}") from exc
            time.sleep(backoff * 2 ** (attempt - 1))
            attempt += 1


def _listing(response: requests.Response) -> dict[str, Any]:
    """The page's JSON, or an error naming the URL, the status and the start of the body."""

    def error(problem: str) -> CrmError:
        return CrmError(
            f"CRM {response.url} {problem} (HTTP {response.status_code}): {response.text[:200]!r}"
        )

    if response.status_code != 200:
        raise error("failed")
    try:
        payload = response.json()
    except ValueError:
        raise error("answered with a body that is not JSON") from None
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("items"), list)
        and "next_cursor" in payload
        and (payload["next_cursor"] is None or isinstance(payload["next_cursor"], str))
    ):
        raise error("answered with JSON that is not a customers page")
    return payload


def validate_items(raw_items: list[Any], *, first_seq: int = 0) -> CrmPage:
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[str, str]] = []
    for offset, raw in enumerate(raw_items):
        try:
            item = CrmItem.model_validate(raw)
        except ValidationError as exc:
            rejects.append((_reason(exc), json.dumps(raw, ensure_ascii=False, default=str)))
            continue
        rows.append({"seq": first_seq + offset, **item.model_dump()})
    return CrmPage(pa.RecordBatch.from_pylist(rows, schema=CRM_ITEMS_SCHEMA), rejects)


def _reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
    )


def with_retries(
    session: requests.Session, *, attempts: int = 5, backoff: float = 1.0
) -> requests.Session:
    """Retry what a later attempt can fix (contract section 4): 429 after its Retry-After, 5xx and
    connection faults with exponential backoff; 401/403 and other 4xx fail at once."""
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=attempts,
        backoff_factor=backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=retry))
    return session
