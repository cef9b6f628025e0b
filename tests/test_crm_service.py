"""The reference CRM service, over HTTP against a real server on a real PostgreSQL.

The ETL's CRM client is tested against this service, so what it serves (pagination, filters,
auth, and each injected fault) must be what the contract says: checked here end to end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pgserver
import psycopg
import pytest
import requests
import uvicorn
from bionicpro_stack.crm_service import app_from_env, create_app, encode_cursor
from fastapi import FastAPI

DDL = (
    Path(__file__).resolve().parents[1]
    / "stack"
    / "src"
    / "bionicpro_stack"
    / "sql"
    / "crm_orders.sql"
)
USER, PASSWORD = "etl", "s3cret:with colon"
AUTH = (USER, PASSWORD)
BASE_TIME = datetime(2024, 1, 20, 10, 0, tzinfo=UTC)
N_ROWS = 23


def _rows() -> list[dict[str, Any]]:
    """Orders as a real CRM holds them: a user with two prostheses, a missing and a bad
    order_date, timestamps with and without fractions, stored in a non-UTC offset."""
    rows = []
    for i in range(N_ROWS):
        rows.append(
            {
                "user_id": 1000 + i // 2,
                "email": f"user{i // 2}@example.com",
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "prosthesis_id": f"PROT-{i:06d}",
                "order_date": "2024-01-15" if i % 5 else None,
                "status": "active" if i % 3 else "cancelled",
                "updated_at": BASE_TIME + timedelta(hours=i),
            }
        )
    rows[1]["order_date"] = "2024-13-45"  # served as stored: the ETL validates
    rows[2]["updated_at"] = datetime(
        2024, 1, 20, 13, 0, 0, 123000, tzinfo=timezone(timedelta(hours=3))
    )
    return rows


ROWS = _rows()


@pytest.fixture(scope="module")
def crm_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL with database `crm`, the project's DDL and the rows above."""
    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"))
    try:
        srv.psql("CREATE DATABASE crm;")
        dsn = srv.get_uri("crm")
        with psycopg.connect(dsn) as conn:
            conn.execute(DDL.read_text())
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO public.crm_orders (user_id, email, first_name, last_name,"
                    " prosthesis_id, order_date, status, updated_at) VALUES (%(user_id)s,"
                    " %(email)s, %(first_name)s, %(last_name)s, %(prosthesis_id)s,"
                    " %(order_date)s, %(status)s, %(updated_at)s)",
                    ROWS,
                )
        yield dsn
    finally:
        srv.cleanup()


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    """Runs `app` on a free local port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "CRM service did not become ready"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def crm(crm_dsn: str) -> Iterator[str]:
    """The service with Basic auth and fault injection on."""
    with _serve(create_app(crm_dsn, USER, PASSWORD, faults_enabled=True)) as base:
        yield base


@pytest.fixture(scope="module")
def plain_crm(crm_dsn: str) -> Iterator[str]:
    """The service as `uvicorn --factory ...:app_from_env` builds it with auth switched off
    explicitly, and no faults."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_DSN", crm_dsn)
        mp.delenv("CRM_USERNAME", raising=False)
        mp.delenv("CRM_PASSWORD", raising=False)
        mp.setenv("CRM_AUTH", "off")
        mp.setenv("CRM_FAULTS", "0")
        app = app_from_env()
    with _serve(app) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty fault queue, even after one that failed midway."""
    yield
    if "crm" in request.fixturenames:
        requests.delete(f"{request.getfixturevalue('crm')}/_faults", timeout=5).raise_for_status()


def _get(base: str, timeout: float = 5, **params: Any) -> requests.Response:
    return requests.get(f"{base}/api/v1/customers", params=params, auth=AUTH, timeout=timeout)


def _walk(base: str, **params: Any) -> list[dict[str, Any]]:
    """Pages through the whole listing; fails on a repeated cursor instead of looping."""
    pages, cursor, seen = [], None, set()
    while True:
        resp = _get(base, **params, **({"cursor": cursor} if cursor else {}))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert cursor not in seen
        seen.add(cursor)


def _fault(base: str, **fault: Any) -> None:
    resp = requests.post(f"{base}/_faults", json=fault, timeout=5)
    assert resp.status_code == 201, resp.text


def _served(base: str) -> int:
    return requests.get(f"{base}/_faults/requests", timeout=5).json()["requests"]


# --- the listing ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 4, 22, 23, 1000])
def test_pagination_serves_every_row_once_in_order(crm: str, limit: int) -> None:
    pages = _walk(crm, limit=limit)
    assert len(pages) == -(-N_ROWS // limit)  # the last page ends with next_cursor null
    assert all(len(page) == limit for page in pages[:-1])
    served = [item["prosthesis_id"] for page in pages for item in page]
    assert served == [row["prosthesis_id"] for row in ROWS]


def test_default_limit_is_100(crm: str) -> None:
    body = _get(crm).json()
    assert len(body["items"]) == N_ROWS
    assert body["next_cursor"] is None


def test_items_carry_what_the_crm_holds(crm: str) -> None:
    items = _get(crm, limit=3).json()["items"]
    assert items[0] == {
        "user_id": 1000,
        "email": "user0@example.com",
        "first_name": "First0",
        "last_name": "Last0",
        "prosthesis_id": "PROT-000000",
        "order_date": None,
        "status": "cancelled",
        "updated_at": "2024-01-20T10:00:00Z",
    }
    assert items[1]["user_id"] == 1000 and items[1]["prosthesis_id"] == "PROT-000001"
    assert items[1]["order_date"] == "2024-13-45"  # not valid, but what the CRM holds
    assert items[2]["updated_at"] == "2024-01-20T10:00:00.123000Z"  # stored at +03:00


@pytest.mark.parametrize(
    "since", ["2024-01-21T00:00:00Z", "2024-01-21T03:00:00+03:00", "2024-01-21T00:00:00.000+00:00"]
)
def test_updated_since_keeps_rows_updated_at_or_after(crm: str, since: str) -> None:
    expected = [
        r["prosthesis_id"] for r in ROWS if r["updated_at"] >= datetime(2024, 1, 21, tzinfo=UTC)
    ]
    assert 0 < len(expected) < N_ROWS
    pages = _walk(crm, limit=3, updated_since=since)
    assert [item["prosthesis_id"] for page in pages for item in page] == expected


def test_updated_since_is_inclusive_and_round_trips_served_timestamps(crm: str) -> None:
    item = _get(crm, limit=3).json()["items"][2]
    items = _get(crm, updated_since=item["updated_at"]).json()["items"]
    assert item in items
    assert all(i["updated_at"] >= item["updated_at"] for i in items)


def test_updated_since_after_everything_is_an_empty_last_page(crm: str) -> None:
    assert _get(crm, updated_since="2030-01-01T00:00:00Z").json() == {
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"cursor": "!!!"},
        {"cursor": "YWJj"},  # base64 of "abc": not an id
        {"cursor": "MQ=="},  # padded: not a cursor this service hands out
        {"cursor": "x"},
        {"updated_since": "yesterday"},
        {"updated_since": "2024-01-21"},  # a date, not a timestamp
        {"updated_since": "2024-01-21T00:00:00"},  # no offset: which instant?
    ],
)
def test_bad_parameters_are_rejected(crm: str, params: dict[str, Any]) -> None:
    resp = _get(crm, **params)
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["detail"]


def test_a_served_cursor_continues_after_its_row(crm: str) -> None:
    first = _get(crm, limit=5).json()
    second = _get(crm, limit=5, cursor=first["next_cursor"]).json()
    assert second["items"][0]["prosthesis_id"] == ROWS[5]["prosthesis_id"]


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth", [None, (USER, "wrong"), ("other", PASSWORD), (USER, PASSWORD + "x"), (USER, "")]
)
def test_wrong_or_missing_credentials_get_401(crm: str, auth: tuple[str, str] | None) -> None:
    resp = requests.get(f"{crm}/api/v1/customers", auth=auth, timeout=5)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert "items" not in resp.text


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!notbase64", "Basic " + "ZXRs"])
def test_malformed_authorization_gets_401(crm: str, header: str) -> None:
    resp = requests.get(f"{crm}/api/v1/customers", headers={"Authorization": header}, timeout=5)
    assert resp.status_code == 401


def test_health_needs_no_credentials(crm: str) -> None:
    resp = requests.get(f"{crm}/health", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_with_auth_switched_off_no_auth_is_asked(plain_crm: str) -> None:
    resp = requests.get(f"{plain_crm}/api/v1/customers", timeout=5)
    assert resp.status_code == 200 and len(resp.json()["items"]) == N_ROWS


@pytest.mark.parametrize(
    "credentials", [{}, {"CRM_USERNAME": "bionicpro"}, {"CRM_PASSWORD": "secret"}]
)
def test_without_credentials_the_service_refuses_to_start(
    crm_dsn: str, credentials: dict[str, str]
) -> None:
    """Started as the stack starts it (`uvicorn --factory`), without both credentials and
    without CRM_AUTH=off: it exits naming what is missing, and never serves anyone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "bionicpro_stack.crm_service:app_from_env",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    done = subprocess.run(
        command, env={**env, "CRM_DSN": crm_dsn, **credentials}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "CRM_USERNAME and CRM_PASSWORD must both be set" in done.stderr


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/_faults", "/_faults/requests"])
def test_fault_endpoints_do_not_exist_when_disabled(plain_crm: str, path: str) -> None:
    assert requests.get(f"{plain_crm}{path}", timeout=5).status_code in (404, 405)
    assert (
        requests.post(f"{plain_crm}/_faults", json={"kind": "drop"}, timeout=5).status_code == 404
    )
    assert requests.delete(f"{plain_crm}/_faults", timeout=5).status_code == 404


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "nope"},
        {"kind": "status"},
        {"kind": "status", "status": 200},
        {"kind": "drop", "times": 0},
        {"kind": "delay"},
    ],
)
def test_invalid_faults_are_refused(crm: str, fault: dict[str, Any]) -> None:
    assert requests.post(f"{crm}/_faults", json=fault, timeout=5).status_code == 422
    assert _get(crm).status_code == 200  # nothing was queued


def test_status_fault_with_retry_after_hits_exactly_times_requests(crm: str) -> None:
    _fault(crm, kind="status", status=429, retry_after=7, times=2)
    before = _served(crm)
    for _ in range(2):
        resp = _get(crm)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "7"
        assert resp.text
    assert _get(crm).status_code == 200
    assert _served(crm) == before + 3


@pytest.mark.parametrize("status", [500, 503, 401, 403])
def test_status_fault_without_retry_after(crm: str, status: int) -> None:
    _fault(crm, kind="status", status=status)
    resp = _get(crm)
    assert resp.status_code == status
    assert "Retry-After" not in resp.headers
    assert _get(crm).status_code == 200


def test_faults_queue_in_order_and_delete_clears_them(crm: str) -> None:
    _fault(crm, kind="status", status=500)
    _fault(crm, kind="status", status=503)
    _fault(crm, kind="not_json", times=5)
    assert _get(crm).status_code == 500
    assert _get(crm).status_code == 503
    assert requests.delete(f"{crm}/_faults", timeout=5).status_code == 200
    assert len(_get(crm).json()["items"]) == N_ROWS


def test_requests_are_counted_even_when_refused(crm: str) -> None:
    before = _served(crm)
    requests.get(f"{crm}/api/v1/customers", timeout=5)  # 401
    _get(crm, limit=0)  # 400
    _get(crm)
    assert _served(crm) == before + 3


def test_delay_fault_makes_a_client_time_out_then_answers_late(crm: str) -> None:
    _fault(crm, kind="delay", seconds=0.6, times=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _get(crm, timeout=0.2)
    started = time.monotonic()
    resp = _get(crm)
    assert time.monotonic() - started >= 0.55
    assert resp.status_code == 200 and len(resp.json()["items"]) == N_ROWS
    started = time.monotonic()
    assert _get(crm).status_code == 200
    assert time.monotonic() - started < 0.5


def test_drop_fault_breaks_the_connection_mid_body(crm: str) -> None:
    _fault(crm, kind="drop")
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        _get(crm)
    assert _get(crm).json()["next_cursor"] is None  # the next request is served whole


def test_drop_fault_sends_headers_and_part_of_the_declared_body(crm: str) -> None:
    _fault(crm, kind="drop")
    resp = requests.get(f"{crm}/api/v1/customers", auth=AUTH, timeout=5, stream=True)
    assert resp.status_code == 200
    declared = int(resp.headers["Content-Length"])
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in resp.iter_content(1024):
            received += chunk
    assert 0 < len(received) < declared
    assert received.startswith(b'{"items":')


def test_not_json_fault(crm: str) -> None:
    _fault(crm, kind="not_json")
    resp = _get(crm)
    assert resp.status_code == 200
    assert resp.text == "<html>maintenance</html>"
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()
    assert _get(crm).json()["items"]


def test_wrong_shape_fault(crm: str) -> None:
    _fault(crm, kind="wrong_shape")
    resp = _get(crm)
    assert resp.status_code == 200
    assert resp.json() == {"data": []}
    assert "items" in _get(crm).json()


def test_repeat_cursor_fault_loops_a_naive_client(crm: str) -> None:
    _fault(crm, kind="repeat_cursor", times=3)
    first = _get(crm, limit=5).json()
    assert first["next_cursor"] == encode_cursor(0)  # "the first page", again
    again = _get(crm, limit=5, cursor=first["next_cursor"]).json()
    assert again == first
    cursor = encode_cursor(7)
    stuck = _get(crm, limit=5, cursor=cursor).json()
    assert stuck["next_cursor"] == cursor  # the cursor it was asked for
    assert [i["prosthesis_id"] for i in stuck["items"]] == [r["prosthesis_id"] for r in ROWS[7:12]]
    # times=3 used up: the cursor advances again.
    assert _get(crm, limit=5, cursor=cursor).json()["next_cursor"] == encode_cursor(12)
