-- The brief's example 1: one user's report for a period.
SELECT *
FROM bionicpro_reports.reports_data_mart
WHERE user_id = 123
  AND report_date BETWEEN '2024-01-01' AND '2024-01-31'
ORDER BY report_date DESC;
