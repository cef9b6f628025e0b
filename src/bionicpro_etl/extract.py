"""Extractors: plain functions that read a source and yield batches; they never write.

Telemetry is aggregated inside PostgreSQL and streamed out as Arrow record batches (ADBC, COPY
binary under the hood), so no per-row Python objects exist. The CRM is read page by page over
HTTP and each item is validated; bad items become rejects with a reason, never guesses.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Self

import adbc_driver_postgresql.dbapi as adbc_pg
import pyarrow as pa
import requests
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    ValidationError,
    ValidationInfo,
)
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from bionicpro_etl import postgres
from bionicpro_etl.config import Settings, settings
from bionicpro_etl.queries import sql
from bionicpro_etl.report_day import FIRST_DATE, LAST_DATE, day_bounds, storable_bounds
from bionicpro_etl.run import Plan

CUSTOMERS_PATH = "/api/v1/customers"


def telemetry_batches(
    dsn: str, plan: Plan, config: Settings, *, shard: int = 0
) -> Iterator[pa.RecordBatch]:
    """Partial aggregates per (day, user, prosthesis, arrival slot) of one of the plan's shards
    of the users: of the arrivals after the re-read point, one query through the BRIN index on
    received_at (the newest blocks only), and of each day read whole, one query per day, each a
    BRIN scan of the day's event_time range: the plan that (a) in docs/benchmarks.md measures.
    Over a range of days PostgreSQL expects a group per row and may aggregate in one process,
    spilling to disk: twice as slow at a million events a day. No event is in two of these
    queries."""
    tz = config.report_tz
    window = (
        plan.watermark_after,
        plan.reread_from,
        plan.reread_next,
        plan.shards,
        shard,
        config.future_tolerance_seconds,
        *storable_bounds(tz),
    )
    with adbc_pg.connect(postgres.aggregating(dsn, config)) as conn, conn.cursor() as cur:
        if plan.reread_from is not None and plan.watermark_after > plan.reread_from:
            cur.execute(
                partials_sql("events_arrived"),
                parameters=(plan.state_start, plan.state_end, tz.key, *window),
            )
            yield from cur.fetch_record_batch()
        for day in plan.read_whole:
            start, end = day_bounds(day, tz)
            cur.execute(partials_sql("events_of_day"), parameters=(start, end, day, *window))
            yield from cur.fetch_record_batch()


def partials_sql(events: str) -> str:
    """telemetry_partials.sql over the events that sql/postgres/<events>.sql selects."""
    return sql("postgres/telemetry_partials").replace("{events}", sql(f"postgres/{events}"))


class CrmError(RuntimeError):
    """The CRM could not be read as the contract says; the run must not go on without it."""


UINT64_MAX = 2**64 - 1
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _unicode(value: str) -> str:
    """JSON can carry half of a UTF-16 pair (a client that cut an emoji in two); no store can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone UTF-16 surrogate)") from None
    return value


# The instants of those days, for an updated_at (UTC days: the CRM's dates are not report days).
_FIRST_INSTANT = datetime.combine(FIRST_DATE, datetime.min.time(), UTC)
_END_INSTANT = datetime.combine(LAST_DATE + timedelta(days=1), datetime.min.time(), UTC)


def _unstorable(text: str) -> ValueError:
    return ValueError(f"{text} is outside {FIRST_DATE}..{LAST_DATE}, the days the mart can hold")


def _order_date(value: Any) -> date | None:
    """An ISO date (YYYY-MM-DD) or null; a number is no date (0 is not 1970-01-01)."""
    if value is None:
        return None
    if not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        raise ValueError(f"not an ISO date (YYYY-MM-DD): {value!r:.40}")
    day = date.fromisoformat(value)
    if not FIRST_DATE <= day <= LAST_DATE:
        raise _unstorable(value)
    return day


def _updated_at(value: Any, info: ValidationInfo) -> datetime:
    """An RFC 3339 date-time with its offset; digits are no time (no epoch is guessed). Not more
    than the tolerance ahead of the run's clock (`context["latest"]`)."""
    if not (isinstance(value, str) and _RFC3339.fullmatch(value)):
        raise ValueError(f"not an RFC 3339 date-time: {value!r:.40}")
    moment = datetime.fromisoformat(value)
    if not _FIRST_INSTANT <= moment < _END_INSTANT:
        raise _unstorable(value)
    latest: datetime | None = (info.context or {}).get("latest")
    if latest is not None and moment > latest:
        raise ValueError(
            f"{value} is further in the future than the run's clock allows ({latest:%Y-%m-%d %H:%M}Z)"
        )
    return moment


Text = Annotated[str, AfterValidator(_unicode)]
NonBlank = Annotated[Text, Field(pattern=r"\S")]


class CrmItem(BaseModel):
    """One CRM item (an order) as contract section 4 defines it. Nothing is coerced."""

    model_config = ConfigDict(extra="ignore")

    user_id: Annotated[StrictInt, Field(ge=1, le=UINT64_MAX)]
    email: Text
    first_name: Text
    last_name: Text
    prosthesis_id: NonBlank
    order_date: Annotated[date | None, PlainValidator(_order_date)]
    status: Text
    updated_at: Annotated[datetime, PlainValidator(_updated_at)]


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
    config: Settings | None = None,
) -> Iterator[CrmPage]:
    """Walk the CRM listing with its cursor until `next_cursor` is null, within the listing's
    budget (config.py): its wall time, empty pages in a row, a page's size. A CRM that breaks
    one of them fails the listing with a message that says which, instead of holding the night.
    The next page is requested as soon as its cursor is known, so the CRM answers it while this
    one is validated and staged; there is never more than one request in flight."""
    config = config or settings()
    url = base_url.rstrip("/") + CUSTOMERS_PATH
    params: dict[str, Any] = {"limit": page_size}
    if updated_since is not None:
        params["updated_since"] = updated_since.isoformat()
    deadline = time.monotonic() + config.crm_listing_budget_seconds
    latest = datetime.now(UTC) + timedelta(seconds=config.future_tolerance_seconds)
    seen_cursors: set[str] = set()
    seq = pages = empty = 0

    def out_of_budget(last: str) -> CrmError:
        return CrmError(
            f"CRM {url} listing ran out of its budget of {config.crm_listing_budget_seconds:g} s"
            f" after {pages} pages (BIONICPRO_CRM_LISTING_BUDGET_SECONDS){last}"
        )

    def page_at(params: dict[str, Any]) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise out_of_budget("")
        try:
            response, body = _get(
                session, url, params, (timeout[0], min(timeout[1], left)), config.crm_max_page_bytes
            )
        except CrmError as exc:
            if time.monotonic() < deadline:
                raise
            raise out_of_budget(f"; the last page: {exc}") from exc
        return _listing(response, body)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-listing") as reader:
        upcoming = reader.submit(page_at, dict(params))
        while True:
            payload = upcoming.result()
            pages += 1
            cursor = payload["next_cursor"]
            if cursor is not None:
                if cursor in seen_cursors:
                    raise CrmError(
                        f"CRM {url} repeated the cursor {cursor!r}; stopping instead of looping"
                    )
                empty = 0 if payload["items"] else empty + 1
                if empty >= config.crm_max_empty_pages:
                    raise CrmError(
                        f"CRM {url} served {empty} empty pages in a row, each with a new cursor;"
                        " stopping instead of paging forever (BIONICPRO_CRM_MAX_EMPTY_PAGES)"
                    )
                seen_cursors.add(cursor)
                params["cursor"] = cursor
                upcoming = reader.submit(page_at, dict(params))
            yield validate_items(payload["items"], first_seq=seq, latest=latest)
            seq += len(payload["items"])
            if cursor is None:
                return


def _get(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    timeout: tuple[float, float],
    max_bytes: int,
    *,
    attempts: int = 4,
    backoff: float = 0.5,
) -> tuple[requests.Response, bytes]:
    """One page and its body, read up to `max_bytes`. The session's urllib3 policy retries what
    fails before a response starts; a connection dropped in the middle of a body only shows
    here, and is retried the same bounded way (a fault that urllib3 already retried to
    exhaustion is not retried again)."""
    attempt = 1
    while True:
        try:
            with session.get(url, params=params, timeout=timeout, stream=True) as response:
                return response, _body(response, max_bytes)
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ConnectionError,
        ) as exc:
            exhausted = bool(exc.args) and isinstance(exc.args[0], MaxRetryError)
            if exhausted or attempt == attempts:
                raise CrmError(f"CRM {url} could not be read: {exc}") from exc
            time.sleep(backoff * 2 ** (attempt - 1))
            attempt += 1


def _body(response: requests.Response, max_bytes: int) -> bytes:
    """The response's body, or an error once it passes `max_bytes` (declared or read)."""

    def too_large() -> CrmError:
        return CrmError(
            f"CRM {response.url} answered with a body over {max_bytes} bytes"
            f" (HTTP {response.status_code}; BIONICPRO_CRM_MAX_PAGE_BYTES)"
        )

    if int(response.headers.get("Content-Length") or 0) > max_bytes:
        raise too_large()
    body = bytearray()
    for chunk in response.iter_content(chunk_size=65536):
        body += chunk
        if len(body) > max_bytes:
            raise too_large()
    return bytes(body)


def _listing(response: requests.Response, body: bytes) -> dict[str, Any]:
    """The page's JSON, or an error naming the URL, the status and the start of the body."""

    def error(problem: str) -> CrmError:
        start = body[:200].decode("utf-8", "replace")
        return CrmError(f"CRM {response.url} {problem} (HTTP {response.status_code}): {start!r}")

    if response.status_code != 200:
        raise error("failed")
    try:
        payload = json.loads(body)
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


def validate_items(
    raw_items: list[Any], *, first_seq: int = 0, latest: datetime | None = None
) -> CrmPage:
    """The valid items as an Arrow batch, the others with their reason; an `updated_at` after
    `latest` (the run's clock plus the tolerance) is a reject."""
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[str, str]] = []
    for offset, raw in enumerate(raw_items):
        try:
            item = CrmItem.model_validate(raw, context={"latest": latest})
        except ValidationError as exc:
            rejects.append((_reason(exc), _as_json(raw)))
            continue
        rows.append({"seq": first_seq + offset, **item.model_dump()})
    return CrmPage(pa.RecordBatch.from_pylist(rows, schema=CRM_ITEMS_SCHEMA), rejects)


def _as_json(raw: Any) -> str:
    """A rejected item as JSON text for the store: readable, but a lone surrogate escaped."""
    text = json.dumps(raw, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(raw, default=str)
    return text


def _reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
    )


class _Retry(Retry):
    """urllib3's retry policy, with the wait a `Retry-After` asks for capped: a CRM that says
    "come back in an hour" is retried sooner, and fails within the listing's budget."""

    def __init__(self, *args: Any, max_retry_after: float = math.inf, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kwargs: Any) -> Self:
        retry = super().new(**kwargs)
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_retry_after)


def with_retries(
    session: requests.Session,
    *,
    attempts: int = 5,
    backoff: float = 1.0,
    max_retry_after: float | None = None,
) -> requests.Session:
    """Retry what a later attempt can fix (contract section 4): 429 after its Retry-After (at
    most `max_retry_after`, default BIONICPRO_CRM_MAX_RETRY_AFTER_SECONDS), 5xx and connection
    faults with exponential backoff; 401/403 and other 4xx fail at once."""
    retry = _Retry(
        total=attempts,
        backoff_factor=backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        respect_retry_after_header=True,
        raise_on_status=False,
        max_retry_after=settings().crm_max_retry_after_seconds
        if max_retry_after is None
        else max_retry_after,
    )
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=retry))
    return session
