"""The page of `make report`: one user's month from the mart, drawn by a real browser (headless
Chromium) as a person would open it: every chart drawn, nothing fetched, no script error."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from datetime import date
from pathlib import Path

import pytest
from bionicpro_stack import report
from conftest import LAST_DAY, build_day

JANUARY = report.Month(date(2024, 1, 1))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def built(stack, ch, crm) -> None:
    """The mart holds January's days (the rebuild finds nothing new after the first time)."""
    build_day(stack, ch, crm, LAST_DAY, "report_page")


def a_user(ch, *, known: bool) -> tuple[int, int]:
    """A user with the most prostheses in January whom the CRM knows (or does not), and how
    many prostheses that is."""
    return ch.query(
        "SELECT user_id, uniqExact(prosthesis_id) AS n FROM bionicpro_reports.reports_data_mart"
        " WHERE toStartOfMonth(report_date) = {month:Date}"
        " GROUP BY user_id HAVING max(email != '') = {known:UInt8}"
        " ORDER BY n DESC, user_id LIMIT 1",
        parameters={"month": JANUARY.first, "known": int(known)},
    ).result_rows[0]


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", *args,
        ],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_a_known_users_month_is_drawn_by_a_browser(built, ch, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    user_id, prostheses = a_user(ch, known=True)
    path = report.write(ch, user_id, JANUARY, tmp_path)
    page = path.read_text(encoding="utf-8")
    assert "as the CRM knows this user" in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)  # nothing fetched
    assert "Plotly.newPlot" in page

    dom = chromium("--dump-dom", path.as_uri())
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    # Plotly builds its chart inside each div only when its script has run.
    assert dom.stdout.count('class="plot-container plotly"') == prostheses
    # Four charts each: usage, actions, response time with efficiency on a second axis, battery.
    assert len(re.findall(r'class="subplot x\d*y\d*"', dom.stdout)) == 5 * prostheses
    assert re.search(r'class="point"', dom.stdout)  # bars drawn

    shot = tmp_path / "page.png"
    chromium(f"--screenshot={shot}", f"--window-size=1200,{300 + 1100 * prostheses}", path.as_uri())
    width, height = png_size(shot)
    assert (width, height) == (1200, 300 + 1100 * prostheses)
    assert shot.stat().st_size > 60_000  # charts, not a blank page (a white one is a few KB)


def test_an_unknown_user_is_shown_as_such(built, ch, tmp_path):
    user_id, _ = a_user(ch, known=False)
    page = report.write(ch, user_id, JANUARY, tmp_path).read_text(encoding="utf-8")
    assert "Not known to the CRM" in page
    assert "no CRM order for this prosthesis" in page


def test_a_month_without_rows_names_the_months_that_have_some(built, ch, tmp_path):
    user_id, _ = a_user(ch, known=True)
    with pytest.raises(report.NoData, match=r"for 2020-01 \(months with rows: .*2024-01"):
        report.write(ch, user_id, report.Month.parse("2020-01"), tmp_path)
    (latest,) = ch.query(
        "SELECT toStartOfMonth(max(report_date)) FROM bionicpro_reports.reports_data_mart"
        " WHERE user_id = {user_id:UInt64}",
        parameters={"user_id": user_id},
    ).result_rows[0]
    page = report.write(ch, user_id, None, tmp_path)  # the user's latest month
    assert page.name == f"user-{user_id}-{latest:%Y-%m}.html"


def test_a_day_that_is_not_complete_is_shaded_and_named(built, ch):
    day, run_id = date(2020, 1, 15), "test_report_page_partial"
    month = report.Month(day.replace(day=1))
    ch.command(
        "INSERT INTO bionicpro_reports.published_days VALUES ({day:Date}, false, NULL, {run:String})",
        parameters={"day": day, "run": run_id},
    )
    try:
        assert report.partial_days(ch, month) == [day]
    finally:
        ch.command(
            "DELETE FROM bionicpro_reports.published_days WHERE run_id = {run:String}",
            parameters={"run": run_id},
        )
    assert report.partial_days(ch, month) == []  # left as it was
    assert report.partial_days(ch, JANUARY) == []  # the daily runs read past every day's end

    user_id, prostheses = a_user(ch, known=True)
    rows = report.month_rows(ch, user_id, JANUARY)
    page = report.render(user_id, JANUARY, rows, [LAST_DAY])
    assert f"<strong>Not complete: {LAST_DAY}</strong>" in page
    # The day shaded in each prosthesis's four charts.
    assert page.count('"type":"rect"') == 4 * prostheses
    assert '"x0":"2024-01-06T12:00:00"' in page
    whole = report.render(user_id, JANUARY, rows, report.partial_days(ch, JANUARY))
    assert "Not complete" not in whole and '"type":"rect"' not in whole
