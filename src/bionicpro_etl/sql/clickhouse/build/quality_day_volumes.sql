-- Each rebuilt day's row count beside the average of the 7 days before it (as the mart will be
-- once this run publishes), to catch a sudden drop or spike in what the sources delivered.
WITH daily AS
(
    SELECT report_date, count() AS rows
    FROM bionicpro_reports.reports_data_mart
    WHERE report_date NOT IN {days:Array(Date)}
    GROUP BY report_date
    UNION ALL
    SELECT report_date, count() AS rows
    FROM bionicpro_staging.{report_rows:Identifier}
    WHERE report_date IN {days:Array(Date)}
    GROUP BY report_date
)
SELECT
    r.d AS report_day,
    sumIf(daily.rows, daily.report_date = r.d) AS day_rows,
    avgIf(daily.rows, daily.report_date BETWEEN r.d - 7 AND r.d - 1) AS trailing_avg,
    countIf(daily.report_date BETWEEN r.d - 7 AND r.d - 1) AS trailing_days
FROM (SELECT arrayJoin({days:Array(Date)}) AS d) AS r
CROSS JOIN daily
GROUP BY r.d
ORDER BY r.d
