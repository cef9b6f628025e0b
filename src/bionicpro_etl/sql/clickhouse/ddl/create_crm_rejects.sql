-- CRM items that did not validate, kept with their reason (contract section 4) so that the
-- CRM team can fix them; they are left out of the join.
-- Kept 90 days: the items hold personal data.
CREATE TABLE IF NOT EXISTS bionicpro_reports.crm_rejects
(
    run_id      String,
    rejected_at DateTime('UTC') DEFAULT now(),
    reason      String,
    item        String
)
ENGINE = MergeTree
ORDER BY (rejected_at, run_id)
TTL rejected_at + INTERVAL 90 DAY;

-- Migrations (see create_data_mart.sql).
-- migration 3: rows expire after 90 days
ALTER TABLE bionicpro_reports.crm_rejects MODIFY TTL rejected_at + INTERVAL 90 DAY;
