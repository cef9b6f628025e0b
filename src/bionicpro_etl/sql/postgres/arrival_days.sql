-- A first run's days (it has no watermark): which of the report days %(days)s (bounds in
-- %(starts)s, %(ends)s) hold events received by %(until)s (psycopg parameters). One probe per
-- day, stopping at its first event, through the BRIN index on event_time: a few block ranges a
-- day, where grouping the whole look-back window by day read every row of it (the benchmark's
-- first run: 3.6 s before, with the bound's full scan; 0.07 s now).
-- The planner prices a LIMIT 1 sequential scan as if a day's rows were spread over the table,
-- but rows lie in arrival order, so a day is one run of blocks and such a scan reads the table up
-- to it: hence no sequential scans here (SET LOCAL: this transaction only). IS TRUE keeps the
-- received_at condition a filter: a bitmap of every block from its BRIN index costs more than
-- the rows it would skip. An event more than %(tolerance)s seconds ahead of its arrival is from a
-- broken clock, no event of its day (telemetry_partials.sql).
SET LOCAL enable_seqscan = off;

SELECT d.report_date
FROM unnest(%(days)s::date[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
    AS d (report_date, start_at, end_at)
CROSS JOIN LATERAL (
    SELECT
    FROM public.telemetry_events
    WHERE event_time >= d.start_at
      AND event_time < d.end_at
      AND (received_at <= %(until)s) IS TRUE
      AND event_time <= received_at + make_interval(secs => %(tolerance)s)
    LIMIT 1
) AS first_event;
