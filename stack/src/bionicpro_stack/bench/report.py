"""The benchmark's report: the runs over the rounds (`Results`), their tables, and the Markdown
page, which is the template `report.md` filled in."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from string import Template

from bionicpro_etl.config import settings
from bionicpro_stack.bench.data import (
    HISTORY_DAYS,
    NIGHT,
    NIGHT_DAYS,
    WHOLE_DAY,
    history_days,
    late_uploads,
)
from bionicpro_stack.bench.job import DAY, Measured, Scale
from bionicpro_stack.bench.source import IndexPlan, SessionPlan
from bionicpro_stack.services import EMBEDDED_ENGINE_ENV

TARGETS = {
    "b/a": 1.3,
    "peak RSS (b), MB": 500.0,
    "CRM read, s": 3.0,
    "no new data / (b)": 0.10,
    "(r): rows PostgreSQL read / events arrived": 1.1,
    "(r)/(a)": 1.3,
    "(q)/(r), PostgreSQL time": 1.5,
    "(q)/(r), wall time": 1.5,
    "(q): slowest quarter-hour run, s": 10.0,
}
ROWS = (
    ("a", "(a) aggregate query alone (PostgreSQL, ADBC): the lower bound"),
    ("scan", "scan floor: the day's rows counted through the index, no values read out"),
    ("copy", "copy floor: the day's raw rows streamed out as Arrow (ADBC)"),
    ("b", "(b) `pipeline.run_all`, no Airflow"),
    ("b'", "(b') the same again at once, no new data"),
    ("c", "(c) `airflow dags test reports_etl_dag`"),
    ("d", "(d) naive reference (`bench.naive`: pandas, JSON, row-wise apply)"),
    ("n", "(n) the next night: the following day, late events of the report day, a watermark"),
    ("r", "(r) the realistic night: a day's arrivals, late uploads of the five days before"),
    ("a_r", "(a_r) (a)'s query over a day of the realistic table, its late uploads included"),
    ("q", "(q) the same arrivals in 96 quarter-hour runs (`*/15`), all of them"),
    ("crm", "CRM read alone (`extract.crm_pages`, all pages, validated)"),
    ("idle", "(0) pipeline imported, chDB opened and closed, no work"),
)
REST = "the rest"


@dataclass(frozen=True)
class Series:
    """One measurement over the rounds: the median round is the one reported."""

    runs: list[Measured]

    @property
    def median(self) -> Measured:
        return sorted(self.runs, key=lambda m: m.seconds)[(len(self.runs) - 1) // 2]

    @property
    def seconds(self) -> float:
        return self.median.seconds

    @property
    def peak_rss_mb(self) -> float:
        return max(m.peak_rss_mb for m in self.runs)

    def spread(self) -> str:
        times = [m.seconds for m in self.runs]
        return f" ({min(times):,.2f} to {max(times):,.2f})" if len(times) > 1 else ""


@dataclass
class Results:
    scale: Scale
    small: bool
    load_before: tuple[float, float, float]
    table_rows: int
    runs: dict[str, Series]  # by label (ROWS)
    engine: str
    postgres: str
    plans: tuple[IndexPlan, IndexPlan]
    sessions: tuple[SessionPlan, ...]  # the night's arrival query by statistics, session, work_mem
    night_events: int  # the events of the days (n) rebuilt
    night_arrivals: int  # the events that arrived in (r)'s night

    def __getitem__(self, label: str) -> Series:
        return self.runs[label]

    def ratios(self) -> dict[str, float]:
        seconds = {label: series.seconds for label, series in self.runs.items()}
        return {
            "b/a": seconds["b"] / seconds["a"],
            "c/a": seconds["c"] / seconds["a"],
            "d/b": seconds["d"] / seconds["b"],
            "no new data / (b)": seconds["b'"] / seconds["b"],
            "(r)/(a)": seconds["r"] / seconds["a"],
            "(r)/(a_r)": seconds["r"] / seconds["a_r"],
            "(q)/(r), wall time": seconds["q"] / seconds["r"],
        }

    def against_targets(self) -> list[tuple[str, float, float]]:
        values = {
            **self.ratios(),
            "peak RSS (b), MB": self["b"].peak_rss_mb,
            "CRM read, s": self["crm"].seconds,
            "(r): rows PostgreSQL read / events arrived": self["r"].median.rows_read
            / self.night_arrivals,
            "(q): slowest quarter-hour run, s": max(self["q"].median.times),
            "(q)/(r), PostgreSQL time": self["q"].median.postgres_seconds
            / self["r"].median.postgres_seconds,
        }
        return [(name, values[name], limit) for name, limit in TARGETS.items()]


def table(r: Results) -> str:
    def line(label: str, title: str) -> str:
        series = r[label]
        if label == "crm":
            rate = f"{series.median.rows / series.seconds:,.0f} items/s"
        elif label == "idle" or (label == "b'" and not series.median.pipeline.telemetry_rows):
            rate = "no events read"
        elif label == "n":
            rate = f"{r.night_events / series.seconds:,.0f} events/s"
        elif label in ("r", "q"):
            rate = f"{r.night_arrivals / series.seconds:,.0f} arrivals/s"
        else:
            rate = f"{r.scale.events / series.seconds:,.0f} events/s"
        return (
            f"| {title} | {series.seconds:,.2f}{series.spread()} | {rate}"
            f" | {series.peak_rss_mb:,.0f} |"
        )

    ratios = ", ".join(f"{name} = {value:.2f}" for name, value in r.ratios().items())
    return "\n".join(
        [
            "| run | wall time, s | rows/s | peak RSS, MB |",
            "|---|---:|---:|---:|",
            *(line(label, title) for label, title in ROWS),
            "",
            f"Ratios (medians): {ratios}.",
        ]
    )


def rows_read(r: Results) -> str:
    """What PostgreSQL read for each measurement, by its own statistics, against the events the
    measurement needed: the day's for (a), its floors and (a_r), the night's arrivals for (r) and
    (q)."""
    needed = {"a": r.scale.events, "scan": r.scale.events, "copy": r.scale.events}
    needed |= {"r": r.night_arrivals, "q": r.night_arrivals, "a_r": r.scale.events}
    titles = dict(ROWS)
    lines = [
        f"| {titles[label]} | {events:,} | {r[label].median.rows_read:,}"
        f" | {r[label].median.rows_read / events:.3f} | {r[label].median.blocks_read:,}"
        f" | {r[label].median.postgres_seconds:,.2f} |"
        for label, events in needed.items()
    ]
    return "\n".join(
        [
            "| run | events it needs | rows PostgreSQL read | ratio | blocks (hit + read)"
            " | PostgreSQL time, s |",
            "|---|---:|---:|---:|---:|---:|",
            *lines,
        ]
    )


def quarter_hours(r: Results) -> str:
    """(q)'s runs one by one: their spread, against (r) and (a)."""
    q = r["q"].median
    times = sorted(q.times)
    median = times[(len(times) - 1) // 2]
    return (
        f"{len(times)} runs, {sum(times):,.2f} s in all: median {median:,.2f} s, fastest"
        f" {times[0]:,.2f} s, slowest {times[-1]:,.2f} s, against {r['r'].seconds:,.2f} s for the"
        f" nightly run (r) over the same arrivals ((q)/(r) = {sum(times) / r['r'].seconds:.2f})"
        f" and {r['a'].seconds:,.2f} s for one day's query (a). PostgreSQL spent"
        f" {q.postgres_seconds:,.2f} s executing the 96 runs' statements, against"
        f" {r['r'].median.postgres_seconds:,.2f} s for (r). The last run's stages:"
        f" {_by_time(q)}: the part of a run that does not shrink with its arrivals is the work in"
        " ClickHouse (staging tables made and dropped, the month rewritten and swapped). The 96"
        " runs share one process, so (q)'s peak RSS is that process's after all of them; in"
        " Airflow each task is a process of its own."
    )


def whole_day(r: Results) -> str:
    """(a_r) beside (a): what reading one day whole costs once days have late uploads."""
    a, whole = r["a"].median, r["a_r"].median
    days = r["r"].median.pipeline.loaded.days
    return (
        f"(a)'s query over {WHOLE_DAY}, a day of the realistic table read whole (a_r), took"
        f" {whole.seconds:,.2f} s against (a)'s {a.seconds:,.2f} s: PostgreSQL touched"
        f" {whole.blocks_read:,} of the table's blocks for it against {a.blocks_read:,}, since"
        " the day's late uploads lie among the next five days' blocks and the BRIN scan of its"
        f" event_time range reads those too. So the night, {days} days touched, costs"
        f" (r)/(a_r) = {r.ratios()['(r)/(a_r)']:.2f} such days, where reading each day it"
        f" touched whole would take {days} such queries."
    )


def stage_times(m: Measured) -> dict[str, float]:
    """A pipeline run's stages in their order, as it reported them, and the rest of its time
    (of a series of runs: of the last one, whose result it keeps)."""
    times = m.pipeline.stage_seconds()
    seconds = m.times[-1] if m.times else m.seconds
    return {**times, REST: seconds - sum(times.values())}


def _stage(name: str) -> str:
    return name if name == REST else f"`{name}`"


def stages(r: Results, label: str) -> str:
    m = r[label].median
    lines = [
        f"| {_stage(name)} | {s:,.2f} | {s / m.seconds:.0%} |" for name, s in stage_times(m).items()
    ]
    return "\n".join([f"| stage | s | share of ({label}) |", "|---|---:|---:|", *lines])


def targets(r: Results) -> str:
    return "\n".join(
        [
            "| target | value | limit | |",
            "|---|---:|---:|---|",
            *(
                f"| {name} | {value:,.2f} | <= {limit:g} | {'met' if value <= limit else '**missed**'} |"
                for name, value, limit in r.against_targets()
            ),
        ]
    )


def _misses(r: Results) -> str:
    """Why each missed target missed, in the run's own numbers."""
    b, again, idle = r["b"].median, r["b'"].median, r["idle"].median
    extract = b.pipeline.stage_seconds()["extract_telemetry"]
    why = {
        "b/a": f"(b) takes {b.seconds - r['a'].seconds:,.2f} s more than (a). Its"
        f" `extract_telemetry` took {extract:,.2f} s against (a)'s"
        f" {r['a'].seconds:,.2f} s; the other stages: {_by_time(b, 'extract_telemetry')}.",
        "peak RSS (b), MB": f"{idle.peak_rss_mb:,.0f} MB of it is the floor of (0): the"
        " pipeline's imports and the chDB engine, opened with no work.",
        "CRM read, s": f"{r['crm'].median.rows:,} items in {r['crm'].seconds:,.2f} s.",
        "no new data / (b)": f"(b') {_did(again)} in {again.seconds:,.2f} s: {_by_time(again)}.",
        "(r): rows PostgreSQL read / events arrived": f"(r) {_did(r['r'].median)}; PostgreSQL"
        f" read {r['r'].median.rows_read:,} rows for {r.night_arrivals:,} arrivals.",
        "(r)/(a)": f"(r) took {r['r'].seconds:,.2f} s: {_by_time(r['r'].median)}."
        f" Against (a)'s query over a day of its own table, (a_r): (r)/(a_r) ="
        f' {r.ratios()["(r)/(a_r)"]:.2f} ("The realistic night", below).',
        "(q)/(r), wall time": quarter_hours(r),
        "(q)/(r), PostgreSQL time": quarter_hours(r),
        "(q): slowest quarter-hour run, s": quarter_hours(r),
    }
    # Targets missed for one reason (the quarter-hour ones) share one line.
    reasons: dict[str, list[str]] = {}
    for name, value, limit in r.against_targets():
        if value > limit:
            reasons.setdefault(why[name], []).append(name)
    lines = [f"- {' and '.join(names)}: {reason}" for reason, names in reasons.items()]
    return "Why the misses:\n\n" + "\n".join(lines) if lines else "Every target is met."


def _by_time(m: Measured, *leave_out: str) -> str:
    """A run's stages, the slowest first."""
    times = sorted(
        ((s, name) for name, s in stage_times(m).items() if name not in leave_out), reverse=True
    )
    return ", ".join(f"{_stage(name)} {s:,.2f} s" for s, name in times)


def _did(m: Measured) -> str:
    """What a pipeline run reports it did, from its own result."""
    result = m.pipeline
    crm = "the whole CRM" if result.crm.crm_full_refresh else "only the CRM's changes"
    return (
        f"built {result.loaded.days} day(s) from {result.telemetry_rows:,}"
        f" aggregate rows and read {crm} (items: {result.crm.crm_items:,})"
    )


def _plan_row(title: str, p: IndexPlan) -> str:
    shipped = ", the shipped kind" if p.shipped else ""
    return (
        f"| {title}{shipped} | {p.index_mb:,.2f} | {p.execution_ms:,.0f} | {p.hit:,} | {p.read:,} |"
    )


def sessions(r: Results) -> str:
    """The night's arrival query by the table's statistics, session and work_mem: how it
    aggregated, in how many processes, and its time."""
    rows = [
        "| statistics | server's work_mem | session | aggregate | parallel workers"
        " | execution, ms |",
        "|---|---|---|---|---:|---:|",
    ]
    rows += [
        f"| {p.statistics} | {p.server_work_mem} | {p.session} | {p.strategy.lower()}"
        f" | {p.workers} | {p.execution_ms:,.0f} |"
        for p in r.sessions
    ]
    return "\n".join(rows)


def _verdict(btree: IndexPlan, brin: IndexPlan) -> str:
    faster, slower = sorted((brin, btree), key=lambda p: p.execution_ms)
    ratio = slower.execution_ms / faster.execution_ms
    buffers = (
        f"{brin.hit + brin.read:,} buffer accesses against the B-tree's {btree.hit + btree.read:,}"
    )
    smaller = f"{btree.index_mb / brin.index_mb:,.0f} times smaller"
    if brin.execution_ms <= 1.1 * btree.execution_ms:
        shipped = "the kind the project ships" if brin.shipped else "not the kind shipped"
        return (
            f"The data supports BRIN ({shipped}): the day's query is as fast or faster with it"
            f" ({'BRIN' if faster is brin else 'the B-tree'} {ratio:.2f}x faster; {buffers}), from"
            f" an index {smaller}, which also costs far less on every insert. Rows land in"
            " arrival order, which is nearly event_time order, so the day is a compact run of"
            " blocks that a bitmap scan reads once each, where the B-tree visits a heap block per"
            " row; the late uploads only make a few block ranges lossy."
        )
    shipped = "the kind the project ships" if btree.shipped else "not the kind shipped"
    return (
        f"The data supports the B-tree ({shipped}): BRIN is {ratio:.2f}x slower for the day"
        f" ({buffers}), though its index is {smaller}."
    )


def _machine() -> str:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{os.cpu_count()} CPUs (nproc), {mem_kb / 2**20:.1f} GiB memory, {cpu},"
        f" {platform.system()} {platform.release()}"
    )


def markdown(r: Results, command: str) -> str:
    """The report page: `report.md` with this run's numbers."""
    s = r.scale
    btree, brin = r.plans
    small = "\nSmall run (`SMALL=1`): a smoke test of the benchmark, not the numbers to quote.\n"
    template = Template(files(__package__).joinpath("report.md").read_text(encoding="utf-8"))
    return template.substitute(
        small=small if r.small else "",
        date=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        command=command,
        machine=_machine(),
        load_before=", ".join(f"{x:.2f}" for x in r.load_before),
        python=platform.python_version(),
        postgres=r.postgres,
        chdb=importlib.metadata.version("chdb"),
        engine=r.engine,
        airflow=importlib.metadata.version("apache-airflow"),
        pandas=importlib.metadata.version("pandas"),
        day=DAY,
        next_day=DAY + timedelta(days=1),
        zone=settings().report_tz.key,
        events=f"{s.events:,}",
        prostheses=f"{s.prostheses:,}",
        users=f"{s.users:,}",
        crm_items=f"{r['crm'].median.rows:,}",
        history_count=HISTORY_DAYS,
        history_days=", ".join(map(str, history_days())),
        table_rows=f"{r.table_rows:,}",
        mart_rows=f"{r['a'].median.rows:,}",
        worker_env=", ".join(f"`{key}={value}`" for key, value in EMBEDDED_ENGINE_ENV.items()),
        repeat=s.repeat,
        did_b=_did(r["b"].median),
        did_b_again=_did(r["b'"].median),
        results=table(r),
        targets=targets(r),
        misses=_misses(r),
        stages_b=stages(r, "b"),
        a_seconds=f"{r['a'].seconds:,.2f}",
        late_uploads=f"{late_uploads(s.events):,}",
        did_n=_did(r["n"].median),
        rows_read=rows_read(r),
        sessions=sessions(r),
        night=NIGHT,
        night_first=NIGHT_DAYS[0],
        night_last=NIGHT_DAYS[-1],
        night_arrivals=f"{r.night_arrivals:,}",
        did_r=_did(r["r"].median),
        r_seconds=f"{r['r'].seconds:,.2f}",
        r_peak_rss=f"{r['r'].peak_rss_mb:,.0f}",
        stages_r=stages(r, "r"),
        quarter_hours=quarter_hours(r),
        q_peak_rss=f"{r['q'].peak_rss_mb:,.0f}",
        whole_days=len(NIGHT_DAYS) - 1,
        whole_day=whole_day(r),
        night_events=f"{r.night_events:,}",
        n_seconds=f"{r['n'].seconds:,.2f}",
        n_peak_rss=f"{r['n'].peak_rss_mb:,.0f}",
        stages_n=stages(r, "n"),
        btree_row=_plan_row("B-tree", btree),
        brin_row=_plan_row("BRIN", brin),
        verdict=_verdict(btree, brin),
        btree_tree=btree.tree,
        brin_tree=brin.tree,
    )
