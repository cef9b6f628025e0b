-- A run's telemetry aggregates as extracted from PostgreSQL (telemetry_daily.sql).
CREATE TABLE bionicpro_staging.{table:Identifier}
(
    user_id                UInt64,
    prosthesis_id          String,
    report_date            Date,
    total_actions          UInt32,
    avg_response_time      Nullable(Float64),
    max_response_time      Nullable(Float64),
    min_response_time      Nullable(Float64),
    grasp_count            UInt32,
    release_count          UInt32,
    flex_count             UInt32,
    avg_battery_level      Nullable(Float64),
    min_battery_level      Nullable(Float64),
    usage_seconds          Float64,
    invalid_response_count UInt32,
    invalid_battery_count  UInt32,
    invalid_duration_count UInt32,
    absurd_duration_count  UInt32
)
ENGINE = MergeTree
ORDER BY (user_id, prosthesis_id, report_date)
