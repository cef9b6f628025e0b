-- The brief's example 2: usage of every user over the last 30 days.
SELECT
    user_id,
    email,
    sum(total_actions) as total_actions,
    avg(avg_response_time) as avg_response_time,
    sum(usage_hours) as total_hours,
    avg(efficiency_score) as avg_efficiency
FROM bionicpro_reports.reports_data_mart
WHERE report_date >= today() - 30
GROUP BY user_id, email
ORDER BY total_actions DESC;
