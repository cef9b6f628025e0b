-- The mart rows of the run's days: their telemetry (the state merged, state_merge.sql), their
-- CRM fields (crm_fields.sql) and the derived metrics of contract section 5. An average is a sum
-- over the count of valid values (the actions less the invalid ones).
INSERT INTO bionicpro_staging.{report_rows:Identifier}
SELECT
    t.user_id AS user_id,
    c.email AS email,
    c.first_name AS first_name,
    c.last_name AS last_name,
    t.prosthesis_id AS prosthesis_id,
    t.report_date AS report_date,
    t.total_actions AS total_actions,
    toFloat32(t.avg_response) AS avg_response_time,
    toFloat32(t.max_response_time) AS max_response_time,
    toFloat32(t.min_response_time) AS min_response_time,
    t.grasp_count AS grasp_count,
    t.release_count AS release_count,
    t.flex_count AS flex_count,
    toFloat32(t.battery_sum / nullIf(t.total_actions - t.invalid_battery_count, 0)) AS avg_battery_level,
    toFloat32(t.min_battery_level) AS min_battery_level,
    -- saturates instead of wrapping around when absurd durations add up past UInt32
    toUInt32(least(round(t.usage_seconds), 4294967295)) AS total_usage_seconds,
    toFloat32(total_usage_seconds / 3600) AS usage_hours,
    if(total_usage_seconds = 0, NULL, toFloat32(t.total_actions / (total_usage_seconds / 3600))) AS actions_per_hour,
    if(t.avg_response IS NULL, NULL,
       toFloat32(greatest(0, least(100, 100 - t.avg_response / 10)))) AS efficiency_score,
    c.order_date AS order_date,
    c.status AS status,
    now() AS loaded_at,
    {run_id:String} AS run_id
FROM
(
    SELECT *, response_sum / nullIf(total_actions - invalid_response_count, 0) AS avg_response
    FROM bionicpro_staging.{telemetry:Identifier}
) AS t
INNER JOIN bionicpro_staging.{crm_fields:Identifier} AS c
    ON c.user_id = t.user_id AND c.prosthesis_id = t.prosthesis_id
