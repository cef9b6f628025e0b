-- A run's users whose CRM data changed (crm_changed_users.sql).
CREATE OR REPLACE TABLE bionicpro_staging.{table:Identifier}
(
    user_id UInt64
)
ENGINE = MergeTree
ORDER BY user_id
