-- The store's migrations applied so far (schema.py): one row per migration, written right after
-- it ran, so that each runs once. Two runs upgrading at the same moment may both apply one (every
-- migration holds on a store that already has it) and both record it: the engine keeps one row.
CREATE TABLE IF NOT EXISTS bionicpro_reports.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version;
