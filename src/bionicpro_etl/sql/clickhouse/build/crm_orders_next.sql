-- The next version of the CRM dimension: per order, the latest of what it held and what this run
-- read. A full listing ({full:Bool}) replaces it, so orders deleted in the CRM disappear.
-- On equal updated_at, the item read by this run wins (rank 1), then the later listed one (seq).
INSERT INTO bionicpro_staging.{crm_orders_next:Identifier}
SELECT user_id, prosthesis_id, latest.1, latest.2, latest.3, latest.4, latest.5, latest.6, latest.7
FROM
(
    SELECT
        user_id,
        prosthesis_id,
        argMax((email, first_name, last_name, order_date, status, updated_at, seq), (updated_at, rank, seq)) AS latest
    FROM
    (
        SELECT *, 0 AS rank FROM bionicpro_reports.crm_orders WHERE NOT {full:Bool}
        UNION ALL
        SELECT user_id, prosthesis_id, email, first_name, last_name, order_date, status, updated_at, seq, 1 AS rank
        FROM bionicpro_staging.{crm_items:Identifier}
    )
    GROUP BY user_id, prosthesis_id
)
