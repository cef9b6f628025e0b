-- The reports data mart (contract section 5): one row per (user_id, prosthesis_id, report_date).
-- Partitioned by month and replaced a month at a time (ALTER ... REPLACE PARTITION), so a plain
-- SELECT sees a rebuilt day either whole or not at all.
CREATE DATABASE IF NOT EXISTS bionicpro_reports;

CREATE TABLE IF NOT EXISTS bionicpro_reports.reports_data_mart
(
    user_id             UInt64,
    email               String,
    first_name          String,
    last_name           String,
    prosthesis_id       String,
    report_date         Date,
    total_actions       UInt32,
    avg_response_time   Nullable(Float32),
    max_response_time   Nullable(Float32),
    min_response_time   Nullable(Float32),
    grasp_count         UInt32,
    release_count       UInt32,
    flex_count          UInt32,
    avg_battery_level   Nullable(Float32),
    min_battery_level   Nullable(Float32),
    total_usage_seconds UInt32,
    usage_hours         Float32,
    actions_per_hour    Nullable(Float32),
    efficiency_score    Nullable(Float32),
    order_date          Nullable(Date),
    status              LowCardinality(String),
    loaded_at           DateTime('UTC') DEFAULT now(),
    run_id              String DEFAULT ''
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(report_date)
PRIMARY KEY (user_id, report_date)
ORDER BY (user_id, report_date, prosthesis_id);
