"""`make bench`: one report day at production scale, built four ways on the same data.

(a) the lower bound: the day's aggregate query (`sql/postgres/telemetry_partials.sql` over
    `events_of_day.sql`, the day read whole) on PostgreSQL alone, read through ADBC as the
    pipeline reads it;
(b) the pipeline without Airflow (`pipeline.run_all`), then again with no new data;
(c) the same day through `airflow dags test reports_etl_dag <day>`;
(d) the naive reference of `bench.naive` (pandas, JSON hand-overs, row-wise apply);
(n) after those, the next night: the following day arrives with late events of the report day,
    and the pipeline runs for it from the first night's watermark (a nightly run's cost).

Each is measured in a fresh subprocess, so that its peak RSS is its own, and repeated (`--repeat`,
rounds interleaved) so that one noisy moment of a shared machine does not make the verdict; the
median is reported. The mart rows of (b), (c) and (d) of every round must agree with each other
and with (a)'s row count, or the run exits non-zero: a fast wrong answer does not pass.

The results go to docs/benchmarks.md (docs/benchmarks-small.md with SMALL=1; `--out` elsewhere),
with EXPLAIN (ANALYZE, BUFFERS) of the day's query under a B-tree index on event_time and under a
BRIN index, whichever of the two the project ships.

The stack is its own (`.stack/bench`), so the benchmark never touches the demo's data.

The modules, bottom up: `job` (the scale, what a measuring process is told and what it reports),
`data` (the day, made by the stack's generator at an exact size), `naive` (the reference),
`measure` (the measuring processes), `source` (the index comparison on PostgreSQL), `check`
(the runs agree), `report` (the Markdown, from `report.md`), `__main__` (the whole run).
"""
