-- The next version of one month of the mart: its days as they are, except the rebuilt days,
-- which come whole from this run's report rows. It replaces the month's partition in one step.
INSERT INTO bionicpro_staging.{month_table:Identifier}
SELECT *
FROM bionicpro_reports.reports_data_mart
WHERE toYYYYMM(report_date) = {month:UInt32}
  AND report_date NOT IN {days:Array(Date)}
UNION ALL
SELECT *
FROM bionicpro_staging.{report_rows:Identifier}
WHERE toYYYYMM(report_date) = {month:UInt32}
