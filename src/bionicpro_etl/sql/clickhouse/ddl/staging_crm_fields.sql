-- A run's CRM fields per (user, prosthesis) it writes (crm_fields.sql).
CREATE OR REPLACE TABLE bionicpro_staging.{table:Identifier}
(
    user_id       UInt64,
    prosthesis_id String,
    email         String,
    first_name    String,
    last_name     String,
    order_date    Nullable(Date),
    status        String
)
ENGINE = MergeTree
ORDER BY (user_id, prosthesis_id)
