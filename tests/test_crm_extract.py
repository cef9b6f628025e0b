"""Reading the CRM (contract section 4) against the reference service over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bionicpro_etl.extract import CrmError, crm_pages, validate_items

GOOD = {
    "user_id": 123, "email": "a@example.com", "first_name": "Анна", "last_name": "O'Brien",
    "prosthesis_id": "PROT-000123", "order_date": "2024-01-15", "status": "active",
    "updated_at": "2024-01-20T10:00:00Z",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_id": 0}, "user_id"),
        ({"user_id": "123"}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"prosthesis_id": ""}, "prosthesis_id"),
        ({"prosthesis_id": "   "}, "prosthesis_id"),
        ({"order_date": "2024-13-45"}, "order_date"),
        ({"updated_at": "yesterday"}, "updated_at"),
        ({"updated_at": "2024-01-20T10:00:00"}, "updated_at"),  # no zone: an instant unknown
        ({"email": None}, "email"),
        ({"user_id": 2**64}, "user_id"),  # beyond UInt64
        ({"order_date": 0}, "order_date"),  # a number is no date
        ({"order_date": "20240115"}, "order_date"),  # ISO dates only: YYYY-MM-DD
        ({"order_date": "1969-12-31"}, "order_date"),  # before the mart's Date
        ({"updated_at": "1705744800"}, "updated_at"),  # no epoch guessing
        ({"updated_at": "2150-01-01T00:00:00Z"}, "updated_at"),  # after the mart's Date
        ({"first_name": "half \ud83e"}, "first_name"),  # a lone UTF-16 surrogate
    ],
)
def test_an_invalid_item_is_rejected_with_its_reason(change, field):
    page = validate_items([GOOD, {**GOOD, **change}])
    assert page.items.num_rows == 1
    ((reason, item),) = page.rejects
    assert reason.startswith(field)
    assert field in item


def test_a_missing_field_is_a_reject():
    item = dict(GOOD)
    del item["status"]
    assert validate_items([item]).rejects[0][0].startswith("status")


def test_valid_items_keep_their_text_and_listing_position():
    page = validate_items([GOOD, {**GOOD, "order_date": None}], first_seq=1000)
    rows = page.items.to_pylist()
    assert [r["seq"] for r in rows] == [1000, 1001]
    assert rows[0]["first_name"] == "Анна" and rows[0]["last_name"] == "O'Brien"
    assert rows[1]["order_date"] is None


def faults(stack, **fault) -> None:
    requests.post(f"{stack.crm_url}/_faults", json=fault, timeout=5).raise_for_status()


@pytest.fixture
def clean_faults(stack):
    requests.delete(f"{stack.crm_url}/_faults", timeout=5)
    yield
    requests.delete(f"{stack.crm_url}/_faults", timeout=5)


def read_all(stack, crm, page_size=100):
    return list(crm_pages(crm, stack.crm_url, page_size=page_size))


def test_pagination_reads_every_item_once(stack, crm, clean_faults):
    small = read_all(stack, crm, page_size=37)
    whole = read_all(stack, crm, page_size=1000)
    seqs = [s for page in small for s in page.items.column("seq").to_pylist()]
    assert len(small) > 3
    assert seqs == sorted(set(seqs))
    assert sum(p.items.num_rows for p in small) == sum(p.items.num_rows for p in whole)


def test_the_next_page_is_asked_for_before_this_one_is_handed_on():
    """The listing requests page 2 as soon as page 1's cursor is known, so that the CRM serves
    it while page 1 is validated and staged. A CRM of two pages, over HTTP, notes the request."""
    asked = threading.Event()

    class TwoPages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cursor = parse_qs(urlsplit(self.path).query).get("cursor", [None])[0]
            if cursor == "2":
                asked.set()
            page = {"items": [GOOD], "next_cursor": "2" if cursor is None else None}
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), TwoPages) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with requests.Session() as session:
                url = f"http://127.0.0.1:{server.server_port}"
                pages = crm_pages(session, url, page_size=1)
                first = next(pages)
                assert asked.wait(timeout=10), "page 2 was asked for only once page 1 was done"
                assert [p.items.num_rows for p in (first, *pages)] == [1, 1]
        finally:
            server.shutdown()


def test_wrong_credentials_fail_without_retry(stack, crm, clean_faults):
    crm.auth = ("bionicpro", "wrong")
    with pytest.raises(CrmError, match="HTTP 401"):
        read_all(stack, crm)


def test_a_body_that_is_not_json_names_url_status_and_body(stack, crm, clean_faults):
    faults(stack, kind="not_json", times=1)
    with pytest.raises(CrmError, match=r"/api/v1/customers.*not JSON \(HTTP 200\).*maintenance"):
        read_all(stack, crm)


def test_json_of_the_wrong_shape_fails(stack, crm, clean_faults):
    faults(stack, kind="wrong_shape", times=1)
    with pytest.raises(CrmError, match="not a customers page"):
        read_all(stack, crm)


def test_a_repeated_cursor_stops_instead_of_looping(stack, crm, clean_faults):
    faults(stack, kind="repeat_cursor", times=5)
    with pytest.raises(CrmError, match="repeated the cursor"):
        read_all(stack, crm)


def test_server_errors_are_retried(stack, crm, clean_faults):
    faults(stack, kind="status", status=503, times=2)
    pages = read_all(stack, crm, page_size=1000)
    assert sum(p.items.num_rows for p in pages) > 0
