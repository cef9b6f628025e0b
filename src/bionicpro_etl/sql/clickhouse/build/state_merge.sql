-- Partial aggregates merged per (day, user, prosthesis) and, with {by_slot:Bool}, per arrival
-- slot: counts and sums add, minimum and maximum take theirs. The rows are those of the staging
-- tables whose names match {sources:String}, all shaped like bionicpro_reports.telemetry_state:
-- a day's next state from what the run read and what the state kept (state_kept.sql), or the
-- day's telemetry from its next state, the same numbers as aggregating the day at once.
INSERT INTO bionicpro_staging.{target:Identifier}
SELECT
    report_date,
    user_id,
    prosthesis_id,
    if({by_slot:Bool}, slot, toDateTime64(0, 6, 'UTC')) AS merged_slot,
    sum(total_actions),
    sum(response_sum),
    max(max_response_time),
    min(min_response_time),
    sum(grasp_count),
    sum(release_count),
    sum(flex_count),
    sum(battery_sum),
    min(min_battery_level),
    sum(usage_seconds),
    sum(invalid_response_count),
    sum(invalid_battery_count),
    sum(invalid_duration_count),
    sum(absurd_duration_count)
FROM merge('bionicpro_staging', {sources:String})
WHERE report_date IN {days:Array(Date)}
GROUP BY report_date, user_id, prosthesis_id, merged_slot
