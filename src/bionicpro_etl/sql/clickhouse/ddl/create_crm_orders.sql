-- The CRM as a dimension: the latest valid item of every order, kept between runs so that the
-- CRM is read incrementally (updated_since). Replaced whole (REPLACE PARTITION) when a run publishes.
CREATE TABLE IF NOT EXISTS bionicpro_reports.crm_orders
(
    user_id       UInt64,
    prosthesis_id String,
    email         String,
    first_name    String,
    last_name     String,
    order_date    Nullable(Date),
    status        String,
    updated_at    DateTime64(6, 'UTC'),
    seq           UInt64
)
ENGINE = MergeTree
ORDER BY (user_id, prosthesis_id);
