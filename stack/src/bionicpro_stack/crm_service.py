"""The reference CRM service: the CRM API of the contract (section 4) over the `crm_orders` table.

The demo and the tests need a CRM that behaves like a real one: a real HTTP server over a real
database, serving whatever the database holds (bad items included, since the ETL must meet them).
With fault injection on, tests can make it fail the ways a real CRM fails (error statuses, slow
answers, dropped connections, garbage bodies, a looping cursor), driven over HTTP.

Run it with `uvicorn --factory bionicpro_stack.crm_service:app_from_env`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CUSTOMERS_PATH = "/api/v1/customers"

_PAGE_SQL = """
SELECT id, user_id, email, first_name, last_name, prosthesis_id, order_date, status, updated_at
FROM public.crm_orders
WHERE id > %(after)s AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s::timestamptz)
ORDER BY id
LIMIT %(n)s
"""
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")


class _BadRequest(Exception):
    """A query parameter the API cannot accept; answered with 400 and the reason."""


def encode_cursor(last_id: int) -> str:
    """Opaque cursor for "the rows after id `last_id`" (unpadded urlsafe base64, URL-safe as is)."""
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """The id a cursor of `encode_cursor` stands for; anything else is a client error."""
    try:
        if not _CURSOR_RE.fullmatch(cursor):
            raise ValueError
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        last_id = int(text)
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        raise _BadRequest(f"malformed cursor: {cursor!r}") from None
    # Only canonical cursors: "+1", " 1" or "01" decode to ints too, but were never served.
    if encode_cursor(last_id) != cursor:
        raise _BadRequest(f"malformed cursor: {cursor!r}")
    return last_id


def _parse_limit(raw: str | None) -> int:
    """Page size; bounded so one request cannot ask for the whole table."""
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise _BadRequest(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _BadRequest(f"limit must be in 1..{MAX_LIMIT}, got {limit}")
    return limit


def _parse_since(raw: str | None) -> datetime | None:
    """An RFC 3339 timestamp; the offset is required, or the instant would be a guess."""
    if raw is None:
        return None
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(f"updated_since is not an RFC 3339 timestamp: {raw!r}") from None
    if since.tzinfo is None:
        raise _BadRequest(f"updated_since needs a time zone offset (e.g. Z): {raw!r}")
    return since


def _format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with `Z`: whole seconds bare, else microseconds, so nothing is lost
    and an `updated_at` fed back as `updated_since` selects that very row."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _item(row: dict[str, Any]) -> dict[str, Any]:
    """An API item from a `crm_orders` row: the stored values as they are, but for the
    internal id (the cursor carries it) and `updated_at` (as RFC 3339 text)."""
    item = {key: value for key, value in row.items() if key != "id"}
    item["updated_at"] = _format_timestamp(row["updated_at"])
    return item


def _authorized(header: str | None, username: str, password: str) -> bool:
    """Whether an Authorization header carries these Basic credentials (constant-time compare)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, pwd = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = secrets.compare_digest(user.encode(), username.encode())
    pwd_ok = secrets.compare_digest(pwd.encode(), password.encode())
    return bool(sep) and user_ok and pwd_ok


# --- fault injection -------------------------------------------------------------------------


class _FaultBase(BaseModel):
    times: int = Field(default=1, ge=1, description="how many requests in a row it hits")


class StatusFault(_FaultBase):
    """Answer with an error status, e.g. 503, 429 with Retry-After, 401."""

    kind: Literal["status"]
    status: int = Field(ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0, description="seconds, as Retry-After")


class DelayFault(_FaultBase):
    """Answer normally, but late: for client timeouts."""

    kind: Literal["delay"]
    seconds: float = Field(ge=0, le=600)


class PlainFault(_FaultBase):
    """Faults with no parameters: a dropped connection, a non-JSON or wrongly shaped body,
    a cursor that never advances, an empty page with a new cursor (a listing without end)."""

    kind: Literal["drop", "not_json", "wrong_shape", "repeat_cursor", "endless"]


class ItemsFault(_FaultBase):
    """Serve these items after the page's stored ones, as raw JSON: values no database column
    holds (a user_id beyond UInt64, a lone UTF-16 surrogate, a number for a date)."""

    kind: Literal["items"]
    items: list[Any]


class OversizedFault(_FaultBase):
    """A page padded to `bytes`, streamed without a Content-Length: a body too large to hold."""

    kind: Literal["oversized"]
    bytes: int = Field(ge=1, le=2**30)


Fault = Annotated[
    StatusFault | DelayFault | PlainFault | ItemsFault | OversizedFault, Field(discriminator="kind")
]


@dataclass
class _Queued:
    fault: Fault
    remaining: int


class _FaultQueue:
    """Faults queued over HTTP, each hitting the next `times` requests, in the order posted;
    plus the count of requests to the customers endpoint, so tests can count a client's retries.

    Only touched from the event loop (async endpoints), so it needs no lock."""

    def __init__(self) -> None:
        self._queue: deque[_Queued] = deque()
        self.requests = 0

    def add(self, fault: Fault) -> None:
        self._queue.append(_Queued(fault, fault.times))

    def clear(self) -> None:
        self._queue.clear()

    def take(self) -> Fault | None:
        """The fault for the request being served, if any, using up one of its `times`."""
        if not self._queue:
            return None
        head = self._queue[0]
        head.remaining -= 1
        if head.remaining == 0:
            self._queue.popleft()
        return head.fault


class _DroppedResponse(Response):
    """Declares the full body's Content-Length, sends half of it and hangs up, as a connection
    lost mid-body does. Returning before the body is complete makes uvicorn close the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})


def _fault_response(fault: Fault) -> Response | None:
    """The whole answer for faults that replace the normal one; None for those that alter it."""
    if isinstance(fault, StatusFault):
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return PlainTextResponse(f"injected fault: HTTP {fault.status}", fault.status, headers)
    if fault.kind == "not_json":
        return Response("<html>maintenance</html>", 200, media_type="text/html")
    if fault.kind == "wrong_shape":
        return JSONResponse({"data": []})
    if fault.kind == "endless":
        return JSONResponse({"items": [], "next_cursor": encode_cursor(secrets.randbelow(2**62))})
    if isinstance(fault, OversizedFault):
        return StreamingResponse(_padded(fault.bytes), media_type="application/json")
    return None


async def _padded(size: int) -> AsyncIterator[bytes]:
    """An empty last page whose JSON is `size` bytes long, in 64 KiB chunks."""
    head, tail = b'{"items": [], "next_cursor": null, "padding": "', b'"}'
    padding = max(size - len(head) - len(tail), 0)
    yield head
    for start in range(0, padding, 65536):
        yield b"x" * min(65536, padding - start)
    yield tail


# --- the app ---------------------------------------------------------------------------------


def create_app(
    dsn: str, username: str | None, password: str | None, faults_enabled: bool = False
) -> FastAPI:
    """The CRM API over the `crm_orders` table at `dsn`.

    Basic auth is required when `username` is set. The fault endpoints (`/_faults`) exist only
    when `faults_enabled`, so no deployment can be broken through them by accident."""
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=8, open=False)
    faults = _FaultQueue()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        try:
            yield
        finally:
            await pool.close()

    @asynccontextmanager
    async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with pool.connection() as conn:
            yield conn

    app = FastAPI(title="BionicPRO reference CRM", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness for the launcher; no auth, no database."""
        return {"status": "ok"}

    @app.get(CUSTOMERS_PATH)
    async def list_customers(
        request: Request,
        limit: str | None = None,
        cursor: str | None = None,
        updated_since: str | None = None,
    ) -> Response:
        """One page of CRM items in id order (keyset pagination: stable while rows are added).

        Parameters are parsed here rather than by FastAPI so that every request, even a bad
        one, is counted and can be hit by a fault, and every bad parameter gets a 400."""
        faults.requests += 1
        fault = faults.take()
        # Injected failures stand for a broken server or proxy in front of the CRM: they come
        # before auth, like a 503 from a load balancer does.
        if fault is not None:
            replacement = _fault_response(fault)
            if replacement is not None:
                return replacement
            if isinstance(fault, DelayFault):
                await asyncio.sleep(fault.seconds)

        if username is not None and not _authorized(
            request.headers.get("authorization"), username, password or ""
        ):
            return PlainTextResponse("unauthorized", 401, {"WWW-Authenticate": 'Basic realm="crm"'})
        try:
            n = _parse_limit(limit)
            after = 0 if cursor is None else _decode_cursor(cursor)  # identity ids start at 1
            since = _parse_since(updated_since)
        except _BadRequest as exc:
            return JSONResponse({"detail": str(exc)}, 400)

        async with connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_PAGE_SQL, {"after": after, "since": since, "n": n + 1})
            rows = await cur.fetchall()
        page, more = rows[:n], len(rows) > n
        items = [_item(row) for row in page]
        next_cursor = encode_cursor(page[-1]["id"]) if more else None
        if fault is not None and fault.kind == "repeat_cursor":
            next_cursor = encode_cursor(after)  # the page just served, again
        body = {"items": items, "next_cursor": next_cursor}
        if fault is not None and fault.kind == "drop":
            return _DroppedResponse(json.dumps(body), 200, media_type="application/json")
        if isinstance(fault, ItemsFault):
            # json.dumps escapes what UTF-8 cannot carry (a lone surrogate), as a client would
            body["items"] += fault.items
            return Response(json.dumps(body), 200, media_type="application/json")
        return JSONResponse(body)

    if faults_enabled:

        @app.post("/_faults", status_code=201)
        async def add_fault(fault: Fault) -> dict[str, Any]:
            """Queue a fault for the next `times` requests to the customers endpoint."""
            faults.add(fault)
            # its kind only: an items fault may hold text that JSON in UTF-8 cannot echo
            return {"queued": fault.kind, "times": fault.times}

        @app.delete("/_faults")
        async def clear_faults() -> dict[str, str]:
            """Drop every queued fault: the service answers normally again."""
            faults.clear()
            return {"status": "cleared"}

        @app.get("/_faults/requests")
        async def count_requests() -> dict[str, int]:
            """Requests to the customers endpoint since start, faulted or not."""
            return {"requests": faults.requests}

    return app


def app_from_env() -> FastAPI:
    """`create_app` configured by CRM_DSN, CRM_USERNAME, CRM_PASSWORD, CRM_AUTH and CRM_FAULTS
    ("1" = on), for `uvicorn --factory`. The service holds customers' personal data, so it
    refuses to start without both credentials unless CRM_AUTH=off says so explicitly."""
    dsn = os.environ.get("CRM_DSN")
    if not dsn:
        raise RuntimeError("CRM_DSN is not set: the CRM service needs its PostgreSQL database")
    username = os.environ.get("CRM_USERNAME") or None
    password = os.environ.get("CRM_PASSWORD") or None
    auth = os.environ.get("CRM_AUTH", "basic")
    if auth not in ("basic", "off"):
        raise RuntimeError(f"CRM_AUTH must be 'basic' (the default) or 'off', not {auth!r}")
    if auth == "off":
        username = password = None
    elif not (username and password):
        raise RuntimeError(
            "CRM_USERNAME and CRM_PASSWORD must both be set: the CRM service will not serve"
            " customers' personal data without credentials (CRM_AUTH=off switches auth off)"
        )
    return create_app(
        dsn,
        username=username,
        password=password,
        faults_enabled=os.environ.get("CRM_FAULTS") == "1",
    )
