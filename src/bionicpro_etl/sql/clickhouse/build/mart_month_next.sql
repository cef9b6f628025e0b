-- The next version of one month of the mart: its rows as they are, except those this run
-- replaces (the rebuilt days, and the look-back's rows of users whose CRM data changed), which come
-- from the run's report rows. It replaces the month's partition in one step. One row per key is
-- kept, the latest built: should the month ever hold a key twice (a part that a hard kill of the
-- embedded engine brought back, docs/operations.md), its next version does not.
INSERT INTO bionicpro_staging.{month_table:Identifier}
SELECT *
FROM bionicpro_reports.reports_data_mart
WHERE toYYYYMM(report_date) = {month:UInt32}
  AND report_date NOT IN {days:Array(Date)}
  AND NOT (
      report_date >= {lookback_start:Date}
      AND user_id IN (SELECT user_id FROM bionicpro_staging.{changed_users:Identifier})
  )
ORDER BY user_id, report_date, prosthesis_id, loaded_at DESC  -- the mart's order: read in order
LIMIT 1 BY user_id, report_date, prosthesis_id
UNION ALL
SELECT *
FROM bionicpro_staging.{report_rows:Identifier}
WHERE toYYYYMM(report_date) = {month:UInt32}
