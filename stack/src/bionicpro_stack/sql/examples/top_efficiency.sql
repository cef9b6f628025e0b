-- The brief's example 3: the ten most efficient users of the last 7 days.
SELECT
    user_id,
    email,
    avg(efficiency_score) as efficiency,
    sum(total_actions) as actions,
    sum(usage_hours) as hours
FROM bionicpro_reports.reports_data_mart
WHERE report_date >= today() - 7
GROUP BY user_id, email
ORDER BY efficiency DESC
LIMIT 10;
