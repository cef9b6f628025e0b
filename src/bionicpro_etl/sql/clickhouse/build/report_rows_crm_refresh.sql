-- Mart rows that keep their metrics but take new CRM fields: rows of users whose CRM data changed,
-- within the look-back, on the days this run does not rebuild from telemetry.
INSERT INTO bionicpro_staging.{report_rows:Identifier}
SELECT
    m.* REPLACE (
        c.email AS email,
        c.first_name AS first_name,
        c.last_name AS last_name,
        c.order_date AS order_date,
        c.status AS status,
        now() AS loaded_at,
        {run_id:String} AS run_id
    )
FROM bionicpro_reports.reports_data_mart AS m
INNER JOIN bionicpro_staging.{crm_fields:Identifier} AS c
    ON c.user_id = m.user_id AND c.prosthesis_id = m.prosthesis_id
WHERE m.report_date >= {lookback_start:Date}
  AND m.report_date NOT IN {days:Array(Date)}
  AND m.user_id IN (SELECT user_id FROM bionicpro_staging.{changed_users:Identifier})
