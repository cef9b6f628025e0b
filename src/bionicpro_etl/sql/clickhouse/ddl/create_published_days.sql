-- Every published report day, for the reports service: whether it is complete (the pipeline has
-- read arrivals past its end in the report zone; until then it is the day so far) and the arrival
-- watermark it reflects (every event of that day received by then is in the mart). Replaced
-- whole (REPLACE PARTITION) when a run publishes, after the mart.
CREATE TABLE IF NOT EXISTS bionicpro_reports.published_days
(
    report_date Date,
    complete    Bool,
    watermark   Nullable(DateTime64(6, 'UTC')),
    run_id      String
)
ENGINE = MergeTree
ORDER BY report_date;
