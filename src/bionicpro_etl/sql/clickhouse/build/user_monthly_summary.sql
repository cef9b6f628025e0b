-- One month of the per-user summary, from the mart as published. avg_response_time is the mean
-- of the days' averages weighted by their actions; avg_efficiency is the mean of the days'
-- scores (as the brief's queries take it); actions_per_hour is recomputed from the sums.
INSERT INTO bionicpro_staging.{summary_table:Identifier}
SELECT
    toStartOfMonth(m.report_date) AS month,
    m.user_id AS user_id,
    argMax(m.email, m.report_date) AS email,
    uniqExact(m.report_date) AS days_active,
    uniqExact(m.prosthesis_id) AS prostheses,
    sum(m.total_actions) AS total_actions,
    sum(m.grasp_count) AS grasp_count,
    sum(m.release_count) AS release_count,
    sum(m.flex_count) AS flex_count,
    sum(m.total_usage_seconds) AS total_usage_seconds,
    total_usage_seconds / 3600 AS usage_hours,
    if(total_usage_seconds = 0, NULL, total_actions / usage_hours) AS actions_per_hour,
    sumIf(toFloat64(m.avg_response_time) * m.total_actions, m.avg_response_time IS NOT NULL)
        / nullIf(sumIf(m.total_actions, m.avg_response_time IS NOT NULL), 0) AS avg_response_time,
    max(m.max_response_time) AS max_response_time,
    min(m.min_battery_level) AS min_battery_level,
    avg(m.efficiency_score) AS avg_efficiency
FROM bionicpro_reports.reports_data_mart AS m
WHERE toYYYYMM(m.report_date) = {month:UInt32}
GROUP BY month, user_id
