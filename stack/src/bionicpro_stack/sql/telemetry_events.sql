-- The telemetry source (contract section 3): one row per action a prosthesis performed.
CREATE TABLE IF NOT EXISTS public.telemetry_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint           NOT NULL,
    prosthesis_id    text             NOT NULL,
    event_time       timestamptz      NOT NULL,
    received_at      timestamptz      NOT NULL DEFAULT now(),
    action_type      text             NOT NULL,
    response_time_ms double precision,
    battery_level    double precision,
    duration_seconds double precision
);

-- Rows land in arrival order, which is nearly event_time order: BRIN indexes fit both time
-- columns. A report day (a range of event_time) becomes a compact run of blocks read once each,
-- from an index thousands of times smaller than a B-tree that costs next to nothing on insert
-- (measured in docs/benchmarks.md, "Source side": about 1.2x faster than the B-tree at 10M rows a day).
CREATE INDEX IF NOT EXISTS telemetry_events_event_time_brin
    ON public.telemetry_events USING brin (event_time) WITH (autosummarize = on);

-- Late uploads are found by arrival time (the incremental watermark). A BRIN range not yet
-- summarized matches every search, so without autosummarize each run would read every page
-- appended since the last VACUUM; with it, autovacuum summarizes each range once it fills
-- (within a minute: autovacuum_naptime), and a run reads the newest pages only.
CREATE INDEX IF NOT EXISTS telemetry_events_received_at_brin
    ON public.telemetry_events USING brin (received_at) WITH (autosummarize = on);

-- The planner sizes a run's read of the newest arrivals from the table's statistics. On a table
-- this size autovacuum analyzes it only once a tenth of it has changed: days of arrivals at a
-- month's history. Until then the newest received_at lies beyond the statistics, the night's
-- arrivals look like one row, and PostgreSQL aggregates them in one process instead of its
-- parallel workers: about twice as long on the benchmark's realistic night (docs/scaling.md,
-- "Fresh statistics"). Analyzing every million rows keeps the estimate within a million of the
-- truth; an ANALYZE reads a sample (30,000 rows by default), whatever the table's size.
ALTER TABLE public.telemetry_events SET (
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000000
);
