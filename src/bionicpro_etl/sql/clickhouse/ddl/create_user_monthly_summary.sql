-- The brief's "materialised view" idea, done so that it stays right: a monthly summary per user,
-- rebuilt from the mart for every month a run publishes (so a replaced day is never counted
-- twice, as a SummingMergeTree fed by inserts would). Averages are recomputed, never summed.
CREATE TABLE IF NOT EXISTS bionicpro_reports.user_monthly_summary
(
    month               Date,
    user_id             UInt64,
    email               String,
    days_active         UInt16,
    prostheses          UInt16,
    total_actions       UInt64,
    grasp_count         UInt64,
    release_count       UInt64,
    flex_count          UInt64,
    total_usage_seconds UInt64,
    usage_hours         Float64,
    actions_per_hour    Nullable(Float64),
    avg_response_time   Nullable(Float64),
    max_response_time   Nullable(Float32),
    min_battery_level   Nullable(Float32),
    avg_efficiency      Nullable(Float64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(month)
ORDER BY (user_id, month);
