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
FROM
(
    -- Each key once, the row built last: a month that a hard kill of the embedded engine left
    -- holding a key twice (docs/operations.md) gives the run one row for it, not two.
    SELECT *
    FROM bionicpro_reports.reports_data_mart
    WHERE report_date >= {lookback_start:Date}
      AND report_date NOT IN {days:Array(Date)}
      AND user_id IN (SELECT user_id FROM bionicpro_staging.{changed_users:Identifier})
    ORDER BY user_id, report_date, prosthesis_id, loaded_at DESC
    LIMIT 1 BY user_id, report_date, prosthesis_id
) AS m
INNER JOIN bionicpro_staging.{crm_fields:Identifier} AS c
    ON c.user_id = m.user_id AND c.prosthesis_id = m.prosthesis_id
