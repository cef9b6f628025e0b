-- The figures of a run's report rows and telemetry that the quality gates judge (quality.py).
SELECT
    (SELECT count() - uniqExact(user_id, prosthesis_id, report_date)
     FROM bionicpro_staging.{report_rows:Identifier}) AS duplicate_keys,
    (SELECT countIf(NOT (
            total_actions > 0
            AND grasp_count + release_count + flex_count <= total_actions
            AND ifNull(min_response_time >= 0 AND avg_response_time BETWEEN min_response_time AND max_response_time, true)
            AND ifNull(min_battery_level >= 0 AND avg_battery_level <= 100 AND min_battery_level <= avg_battery_level, true)
            AND ifNull(efficiency_score BETWEEN 0 AND 100, true)
            AND usage_hours >= 0
        ))
     FROM bionicpro_staging.{report_rows:Identifier}) AS out_of_range_rows,
    -- over the rebuilt days only: rows re-joined for a CRM change are a handful of users
    (SELECT countIf(status = 'unknown') / greatest(count(), 1)
     FROM bionicpro_staging.{report_rows:Identifier}
     WHERE report_date IN {days:Array(Date)}) AS no_order_share,
    (SELECT (sum(invalid_response_count) + sum(invalid_battery_count) + sum(invalid_duration_count))
            / greatest(3 * sum(total_actions), 1)
     FROM bionicpro_staging.{telemetry:Identifier}) AS invalid_measurement_share,
    (SELECT sum(absurd_duration_count) / greatest(sum(total_actions), 1)
     FROM bionicpro_staging.{telemetry:Identifier}) AS absurd_duration_share
