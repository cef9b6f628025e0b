-- The run log: one row per finished run. The telemetry watermark is read back from it (the
-- latest successful run's watermark_after), so it advances only when a whole run has published.
-- A successful run's `publication` numbers it among all publications (fence.py). Its
-- `overlap_from` is where the next run reads arrivals after (the telemetry state, plan.py).
CREATE TABLE IF NOT EXISTS bionicpro_reports.etl_runs
(
    run_id                 String,
    logical_date           Nullable(DateTime64(3, 'UTC')),
    report_day             Date,
    status                 LowCardinality(String),
    publication            UInt64,
    finished_at            DateTime64(3, 'UTC') DEFAULT now64(3),
    days_rebuilt           Array(Date),
    telemetry_rows         UInt64,
    events_read            UInt64,
    events_beyond_lookback UInt64,
    events_bad_time        UInt64,
    crm_full_refresh       Bool,
    crm_items              UInt64,
    crm_rejects            UInt64,
    crm_changed_users      UInt64,
    report_rows            UInt64,
    refreshed_rows         UInt64,
    published_rows         UInt64,
    watermark_before       Nullable(DateTime64(6, 'UTC')),
    watermark_after        Nullable(DateTime64(6, 'UTC')),
    overlap_from           Nullable(DateTime64(6, 'UTC')),
    crm_watermark_before   Nullable(DateTime64(6, 'UTC')),
    crm_watermark_after    Nullable(DateTime64(6, 'UTC')),
    stage_seconds          Map(String, Float64),
    error                  String
)
ENGINE = MergeTree
ORDER BY (finished_at, run_id);

-- Migrations of the run log (see create_data_mart.sql).
-- migration 2: events_bad_time, the arrivals whose event time no report day can have
ALTER TABLE bionicpro_reports.etl_runs ADD COLUMN IF NOT EXISTS events_bad_time UInt64 AFTER events_beyond_lookback;
-- migration 6: publication, the number of a successful run's publication (0 before the fence)
ALTER TABLE bionicpro_reports.etl_runs ADD COLUMN IF NOT EXISTS publication UInt64 AFTER status;
-- migration 7: overlap_from, overlap_counts, the window below the watermark that the next run counts again
ALTER TABLE bionicpro_reports.etl_runs
    ADD COLUMN IF NOT EXISTS overlap_from Nullable(DateTime64(6, 'UTC')) AFTER watermark_after,
    ADD COLUMN IF NOT EXISTS overlap_counts Map(Date, UInt64) AFTER overlap_from;
-- migration 8: events_read, the events a run read; no overlap_counts (the window is read again)
ALTER TABLE bionicpro_reports.etl_runs ADD COLUMN IF NOT EXISTS events_read UInt64 AFTER telemetry_rows;
ALTER TABLE bionicpro_reports.etl_runs DROP COLUMN IF EXISTS overlap_counts;
