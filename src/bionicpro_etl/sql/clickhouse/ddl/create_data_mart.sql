-- The reports data mart (contract section 5): one row per (user_id, prosthesis_id, report_date).
-- Partitioned by month and replaced a month at a time (ALTER ... REPLACE PARTITION), so a plain
-- SELECT sees a rebuilt day either whole or not at all.
-- Each column's COMMENT is its meaning, the one description of it: docs/mart.md's table, the
-- tests' and the benchmark's column lists are derived from this file (schema.mart_columns).
CREATE DATABASE IF NOT EXISTS bionicpro_reports;

CREATE TABLE IF NOT EXISTS bionicpro_reports.reports_data_mart
(
    user_id             UInt64 COMMENT 'the prosthesis owner (the user_id of telemetry and CRM)',
    email               String COMMENT 'from the CRM order with this (user_id, prosthesis_id); without one, from the user''s most recently updated CRM item; empty when the CRM does not know the user',
    first_name          String COMMENT 'as `email`',
    last_name           String COMMENT 'as `email`',
    prosthesis_id       String COMMENT 'the prosthesis, e.g. `PROT-000123`',
    report_date         Date COMMENT 'calendar day of `event_time` in the report zone',
    total_actions       UInt32 COMMENT 'the day''s events (an invalid measurement never drops an event)',
    avg_response_time   Nullable(Float32) COMMENT 'mean of valid `response_time_ms` (0..60000), in ms; null when none',
    max_response_time   Nullable(Float32) COMMENT 'largest valid `response_time_ms`, in ms; null when none',
    min_response_time   Nullable(Float32) COMMENT 'smallest valid `response_time_ms`, in ms; null when none',
    grasp_count         UInt32 COMMENT 'events whose `lower(trim(action_type))` is `grasp`',
    release_count       UInt32 COMMENT 'events whose `lower(trim(action_type))` is `release`',
    flex_count          UInt32 COMMENT 'events whose `lower(trim(action_type))` is `flex`',
    avg_battery_level   Nullable(Float32) COMMENT 'mean of valid `battery_level` (0..100), in %; null when none',
    min_battery_level   Nullable(Float32) COMMENT 'lowest valid `battery_level`, in %; null when none',
    total_usage_seconds UInt32 COMMENT 'sum of valid `duration_seconds` (0..86400 each), rounded to whole seconds (half to even)',
    usage_hours         Float32 COMMENT '`total_usage_seconds / 3600`',
    actions_per_hour    Nullable(Float32) COMMENT '`total_actions / usage_hours`; null when `usage_hours` = 0',
    efficiency_score    Nullable(Float32) COMMENT '`clamp(100 - avg_response_time / 10, 0, 100)`; null when `avg_response_time` is null',
    order_date          Nullable(Date) COMMENT 'from the CRM order with this (user_id, prosthesis_id); null without one',
    status              LowCardinality(String) COMMENT 'that order''s status; `unknown` when there is no such order',
    loaded_at           DateTime('UTC') DEFAULT now() COMMENT 'when the row was built',
    run_id              String DEFAULT '' COMMENT 'the Airflow run that built it'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(report_date)
PRIMARY KEY (user_id, report_date)
ORDER BY (user_id, report_date, prosthesis_id);

-- Migrations of the mart: how a store of an earlier version gets the table above. Each is applied
-- once, in order of the numbers (unique across all DDL files), and recorded in
-- bionicpro_reports.schema_migrations; each must also hold on a table that already has it.
-- migration 1: the columns' meanings as COMMENTs (the first release had none)
ALTER TABLE bionicpro_reports.reports_data_mart
    COMMENT COLUMN user_id 'the prosthesis owner (the user_id of telemetry and CRM)',
    COMMENT COLUMN email 'from the CRM order with this (user_id, prosthesis_id); without one, from the user''s most recently updated CRM item; empty when the CRM does not know the user',
    COMMENT COLUMN first_name 'as `email`',
    COMMENT COLUMN last_name 'as `email`',
    COMMENT COLUMN prosthesis_id 'the prosthesis, e.g. `PROT-000123`',
    COMMENT COLUMN report_date 'calendar day of `event_time` in the report zone',
    COMMENT COLUMN total_actions 'the day''s events (an invalid measurement never drops an event)',
    COMMENT COLUMN avg_response_time 'mean of valid `response_time_ms` (>= 0, finite), in ms; null when none',
    COMMENT COLUMN max_response_time 'largest valid `response_time_ms`, in ms; null when none',
    COMMENT COLUMN min_response_time 'smallest valid `response_time_ms`, in ms; null when none',
    COMMENT COLUMN grasp_count 'events whose `lower(trim(action_type))` is `grasp`',
    COMMENT COLUMN release_count 'events whose `lower(trim(action_type))` is `release`',
    COMMENT COLUMN flex_count 'events whose `lower(trim(action_type))` is `flex`',
    COMMENT COLUMN avg_battery_level 'mean of valid `battery_level` (0..100), in %; null when none',
    COMMENT COLUMN min_battery_level 'lowest valid `battery_level`, in %; null when none',
    COMMENT COLUMN total_usage_seconds 'sum of valid `duration_seconds` (>= 0, finite), rounded to whole seconds (half to even)',
    COMMENT COLUMN usage_hours '`total_usage_seconds / 3600`',
    COMMENT COLUMN actions_per_hour '`total_actions / usage_hours`; null when `usage_hours` = 0',
    COMMENT COLUMN efficiency_score '`clamp(100 - avg_response_time / 10, 0, 100)`; null when `avg_response_time` is null',
    COMMENT COLUMN order_date 'from the CRM order with this (user_id, prosthesis_id); null without one',
    COMMENT COLUMN status 'that order''s status; `unknown` when there is no such order',
    COMMENT COLUMN loaded_at 'when the row was built',
    COMMENT COLUMN run_id 'the Airflow run that built it';

-- migration 5: the valid ranges of response times and durations in the COMMENTs (contract section 5)
ALTER TABLE bionicpro_reports.reports_data_mart
    COMMENT COLUMN avg_response_time 'mean of valid `response_time_ms` (0..60000), in ms; null when none',
    COMMENT COLUMN total_usage_seconds 'sum of valid `duration_seconds` (0..86400 each), rounded to whole seconds (half to even)';
