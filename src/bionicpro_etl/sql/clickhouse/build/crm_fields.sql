-- The CRM fields of every (user, prosthesis) this run writes (contract section 5): from the order
-- with that key; without one, names from the user's most recently updated item, no order date,
-- status 'unknown'; '' where the CRM does not know the user.
-- The keys: the rebuilt days' telemetry, and the look-back's mart rows of users whose CRM changed.
INSERT INTO bionicpro_staging.{crm_fields:Identifier}
SELECT
    k.user_id,
    k.prosthesis_id,
    if(o.has_order, o.email, p.latest.1),
    if(o.has_order, o.first_name, p.latest.2),
    if(o.has_order, o.last_name, p.latest.3),
    if(o.has_order, o.order_date, NULL),
    if(o.has_order, o.status, 'unknown')
FROM
(
    SELECT DISTINCT user_id, prosthesis_id
    FROM bionicpro_staging.{telemetry:Identifier}
    UNION DISTINCT
    SELECT user_id, prosthesis_id
    FROM bionicpro_reports.reports_data_mart
    WHERE report_date >= {lookback_start:Date}
      AND user_id IN (SELECT user_id FROM bionicpro_staging.{changed_users:Identifier})
) AS k
LEFT JOIN
(
    SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status, 1 AS has_order
    FROM bionicpro_staging.{crm_orders_next:Identifier}
) AS o ON o.user_id = k.user_id AND o.prosthesis_id = k.prosthesis_id
LEFT JOIN
(
    SELECT user_id, argMax((email, first_name, last_name), (updated_at, seq)) AS latest
    FROM bionicpro_staging.{crm_orders_next:Identifier}
    GROUP BY user_id
) AS p ON p.user_id = k.user_id
