-- One user's days of one month, per prosthesis, for the page of `make report`.
SELECT
    prosthesis_id,
    report_date,
    email,
    first_name,
    last_name,
    status,
    order_date,
    total_actions,
    grasp_count,
    release_count,
    flex_count,
    usage_hours,
    avg_response_time,
    min_response_time,
    max_response_time,
    efficiency_score,
    avg_battery_level,
    min_battery_level
FROM bionicpro_reports.reports_data_mart
WHERE user_id = {user_id:UInt64}
  AND report_date BETWEEN {first_day:Date} AND {last_day:Date}
ORDER BY prosthesis_id, report_date
