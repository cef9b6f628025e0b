-- Partial aggregates merged per (day, user, prosthesis) and, with {by_slot:Bool}, per arrival
-- slot: counts and sums add, minimum and maximum take theirs. The rows are those of the staging
-- tables whose names match {sources:String}, all shaped like bionicpro_reports.telemetry_state,
-- and what the state keeps of the days {kept:Array(Date)}: a day's next state from what the run
-- read and what the state kept, or the day's telemetry from its next state (no days kept), the
-- same numbers as aggregating the day at once.
-- What the state keeps of a day it does not read whole: the slots below the point the run reads
-- arrivals after (arrivals no run reads again), folded into one. Slots from there on the run read
-- again, so they are replaced with what it read, never added to: a retry, an overlap re-read or a
-- second run over the same arrivals counts no event twice.
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
FROM
(
    SELECT *
    FROM merge('bionicpro_staging', {sources:String})
    WHERE report_date IN {days:Array(Date)}
    UNION ALL
    SELECT * REPLACE (toDateTime64(0, 6, 'UTC') AS slot)
    FROM
    (
        -- a subquery: in a WHERE beside the REPLACE, `slot` would be the folded one. Each key
        -- once, from the newest part: a part that a hard kill of the embedded engine brought back
        -- (docs/operations.md) would otherwise add its events again.
        SELECT *
        FROM bionicpro_reports.telemetry_state
        WHERE report_date IN {kept:Array(Date)}
          AND slot < {reread_from:Nullable(DateTime64(6, 'UTC'))}
        ORDER BY report_date, user_id, prosthesis_id, slot, _part_data_version DESC
        LIMIT 1 BY report_date, user_id, prosthesis_id, slot
    )
)
GROUP BY report_date, user_id, prosthesis_id, merged_slot
