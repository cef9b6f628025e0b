-- The mart rows of the rebuilt days: telemetry aggregates joined with the CRM, plus the derived
-- metrics of contract section 5.
-- CRM fields come from the order with the same (user_id, prosthesis_id), the latest updated_at
-- winning; without such an order, names come from the user's latest item and status is 'unknown'.
INSERT INTO bionicpro_staging.{report_rows:Identifier}
SELECT
    t.user_id AS user_id,
    if(o.has_order, o.latest.1, p.latest.1) AS email,
    if(o.has_order, o.latest.2, p.latest.2) AS first_name,
    if(o.has_order, o.latest.3, p.latest.3) AS last_name,
    t.prosthesis_id AS prosthesis_id,
    t.report_date AS report_date,
    t.total_actions AS total_actions,
    toFloat32(t.avg_response_time) AS avg_response_time,
    toFloat32(t.max_response_time) AS max_response_time,
    toFloat32(t.min_response_time) AS min_response_time,
    t.grasp_count AS grasp_count,
    t.release_count AS release_count,
    t.flex_count AS flex_count,
    toFloat32(t.avg_battery_level) AS avg_battery_level,
    toFloat32(t.min_battery_level) AS min_battery_level,
    toUInt32(round(t.usage_seconds)) AS total_usage_seconds,
    toFloat32(total_usage_seconds / 3600) AS usage_hours,
    if(total_usage_seconds = 0, NULL, toFloat32(t.total_actions / (total_usage_seconds / 3600))) AS actions_per_hour,
    if(t.avg_response_time IS NULL, NULL,
       toFloat32(greatest(0, least(100, 100 - t.avg_response_time / 10)))) AS efficiency_score,
    if(o.has_order, o.latest.4, NULL) AS order_date,
    if(o.has_order, o.latest.5, 'unknown') AS status,
    now() AS loaded_at,
    {run_id:String} AS run_id
FROM bionicpro_staging.{telemetry:Identifier} AS t
LEFT JOIN
(
    SELECT
        user_id,
        prosthesis_id,
        argMax((email, first_name, last_name, order_date, status), (updated_at, seq)) AS latest,
        1 AS has_order
    FROM bionicpro_staging.{crm_items:Identifier}
    GROUP BY user_id, prosthesis_id
) AS o ON o.user_id = t.user_id AND o.prosthesis_id = t.prosthesis_id
LEFT JOIN
(
    SELECT user_id, argMax((email, first_name, last_name), (updated_at, seq)) AS latest
    FROM bionicpro_staging.{crm_items:Identifier}
    GROUP BY user_id
) AS p ON p.user_id = t.user_id
