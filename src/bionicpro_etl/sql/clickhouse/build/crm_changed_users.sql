-- Users whose CRM data this run changes (an order added, changed or gone): their mart rows within
-- the look-back take the new values. A re-listed item with the same content changes nothing.
INSERT INTO bionicpro_staging.{changed_users:Identifier}
SELECT DISTINCT user_id
FROM
(
    (
        SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status
        FROM bionicpro_staging.{crm_orders_next:Identifier}
        EXCEPT
        SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status
        FROM bionicpro_reports.crm_orders
    )
    UNION ALL
    (
        SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status
        FROM bionicpro_reports.crm_orders
        EXCEPT
        SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status
        FROM bionicpro_staging.{crm_orders_next:Identifier}
    )
)
