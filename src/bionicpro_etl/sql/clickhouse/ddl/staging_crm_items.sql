-- A run's valid CRM items, as listed; seq is the position in the listing (breaks updated_at ties).
CREATE OR REPLACE TABLE bionicpro_staging.{table:Identifier}
(
    seq           UInt64,
    user_id       UInt64,
    email         String,
    first_name    String,
    last_name     String,
    prosthesis_id String,
    order_date    Nullable(Date),
    status        String,
    updated_at    DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (user_id, prosthesis_id)
