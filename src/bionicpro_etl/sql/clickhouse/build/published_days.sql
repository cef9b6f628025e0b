-- The next version of bionicpro_reports.published_days. The days this run read every arrival of
-- take its watermark: those it rebuilt, and every published day from its look-back on (arrivals
-- for them would have been rebuilt). A day is complete once the watermark has passed its end in
-- the report zone. Older days keep their row; days the run log knows from before this table get
-- the watermark of the run that last rebuilt them.
INSERT INTO bionicpro_staging.{published_days_next:Identifier}
SELECT
    report_date,
    ifNull(watermark >= toDateTime64(report_date + 1, 6, {tz:String}), false),
    watermark,
    run_id
FROM
(
    SELECT report_date, {watermark:Nullable(DateTime64(6, 'UTC'))} AS watermark, {run_id:String} AS run_id
    FROM
    (
        SELECT arrayJoin({days:Array(Date)}) AS report_date
        UNION DISTINCT
        SELECT report_date FROM bionicpro_reports.published_days
        UNION DISTINCT
        SELECT arrayJoin(days_rebuilt) AS report_date
        FROM bionicpro_reports.etl_runs
        WHERE status = 'success'
    )
    WHERE report_date >= {lookback_start:Date}
    UNION ALL
    -- each day once, should a part that a hard kill of the embedded engine brought back hold it
    -- twice (docs/operations.md)
    SELECT report_date, watermark, run_id
    FROM bionicpro_reports.published_days
    WHERE report_date < {lookback_start:Date}
    ORDER BY report_date, watermark DESC
    LIMIT 1 BY report_date
    UNION ALL
    SELECT day, argMax(watermark_after, finished_at), argMax(run_id, finished_at)
    FROM bionicpro_reports.etl_runs
    ARRAY JOIN days_rebuilt AS day
    WHERE status = 'success'
      AND day < {lookback_start:Date}
      AND day NOT IN (SELECT report_date FROM bionicpro_reports.published_days)
    GROUP BY day
)
