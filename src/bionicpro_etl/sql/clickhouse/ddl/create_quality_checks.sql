-- Every quality check of every run, with its figure and the levels it was judged by.
-- Kept 90 days: enough to follow a trend.
CREATE TABLE IF NOT EXISTS bionicpro_reports.quality_checks
(
    run_id     String,
    checked_at DateTime('UTC') DEFAULT now(),
    report_day Date,
    check      LowCardinality(String),
    level      LowCardinality(String),
    figure     Float64,
    warn_at    Nullable(Float64),
    error_at   Nullable(Float64),
    detail     String
)
ENGINE = MergeTree
ORDER BY (checked_at, run_id)
TTL checked_at + INTERVAL 90 DAY;

-- Migrations (see create_data_mart.sql).
-- migration 4: rows expire after 90 days
ALTER TABLE bionicpro_reports.quality_checks MODIFY TTL checked_at + INTERVAL 90 DAY;
