-- Every quality check of every run, with its figure and the levels it was judged by.
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
ORDER BY (checked_at, run_id);
