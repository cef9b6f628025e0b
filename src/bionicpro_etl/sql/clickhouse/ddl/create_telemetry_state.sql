-- The telemetry's partial aggregates per report day, kept between runs so that a run reads from
-- PostgreSQL only what arrived since the last one (docs/design.md, "Each event read once").
-- Every column merges: counts and sums add, minimum and maximum take theirs; averages are
-- sum / count, the counts being total_actions less the invalid ones. A row holds the events of
-- (report_date, user_id, prosthesis_id) whose received_at lies in one arrival slot: `slot` is
-- where the slot starts, 1970-01-01 for every arrival the runs will not read again. A run
-- replaces a day's partition whole (REPLACE PARTITION), so re-reading a slot replaces it and
-- never adds to it. A day has a partition once its state is complete (docs/design.md).
CREATE TABLE IF NOT EXISTS bionicpro_reports.telemetry_state
(
    report_date            Date,
    user_id                UInt64,
    prosthesis_id          String,
    slot                   DateTime64(6, 'UTC'),
    total_actions          UInt64,
    response_sum           Float64,
    max_response_time      Nullable(Float64),
    min_response_time      Nullable(Float64),
    grasp_count            UInt64,
    release_count          UInt64,
    flex_count             UInt64,
    battery_sum            Float64,
    min_battery_level      Nullable(Float64),
    usage_seconds          Float64,
    invalid_response_count UInt64,
    invalid_battery_count  UInt64,
    invalid_duration_count UInt64,
    absurd_duration_count  UInt64
)
ENGINE = MergeTree
PARTITION BY report_date
ORDER BY (user_id, prosthesis_id, slot);
