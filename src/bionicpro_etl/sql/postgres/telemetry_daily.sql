-- One row per (user, prosthesis, report day) of the telemetry in [$1, $2) (ADBC parameters): the events
-- aggregated where they live, so only the small aggregate leaves PostgreSQL.
-- $3 is the report time zone; $4 and $5 select a shard; $6 is how many seconds an event time may
-- be ahead of its arrival (further: a broken clock, not an event of this day; arrivals.sql).
-- Valid measurements (contract section 5): response_time_ms in [0, 60000], battery_level in
-- [0, 100], duration_seconds in [0, 86400]. Anything else (null, negative, NaN, infinite, absurdly
-- large) counts as not measured, and the event still counts as an action. The ranges also keep
-- every sum and average finite: PostgreSQL raises on a float8 overflow (avg of two 1e308).
SELECT
    user_id,
    prosthesis_id,
    (event_time AT TIME ZONE $3)::date AS report_date,
    count(*) AS total_actions,
    avg(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000) AS avg_response_time,
    max(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000) AS max_response_time,
    min(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000) AS min_response_time,
    count(*) FILTER (WHERE lower(trim(action_type)) = 'grasp') AS grasp_count,
    count(*) FILTER (WHERE lower(trim(action_type)) = 'release') AS release_count,
    count(*) FILTER (WHERE lower(trim(action_type)) = 'flex') AS flex_count,
    avg(battery_level) FILTER (WHERE battery_level BETWEEN 0 AND 100) AS avg_battery_level,
    min(battery_level) FILTER (WHERE battery_level BETWEEN 0 AND 100) AS min_battery_level,
    coalesce(sum(duration_seconds) FILTER (WHERE duration_seconds BETWEEN 0 AND 86400), 0) AS usage_seconds,
    -- Not measured (null or invalid), per metric, and actions said to last longer than a day
    -- (invalid too; a sensor in the wrong unit shows here): for the quality checks.
    count(*) FILTER (WHERE NOT coalesce(response_time_ms BETWEEN 0 AND 60000, false)) AS invalid_response_count,
    count(*) FILTER (WHERE NOT coalesce(battery_level BETWEEN 0 AND 100, false)) AS invalid_battery_count,
    count(*) FILTER (WHERE NOT coalesce(duration_seconds BETWEEN 0 AND 86400, false)) AS invalid_duration_count,
    count(*) FILTER (WHERE duration_seconds > 86400 AND duration_seconds < 'Infinity') AS absurd_duration_count
FROM public.telemetry_events
WHERE event_time >= $1
  AND event_time < $2
  AND event_time <= received_at + make_interval(secs => $6)
  -- shard $5 of $4 (by a hash of user_id), so that several workers can share a day's read
  AND ($4 = 1 OR abs(hashint8(user_id)::bigint) % $4 = $5)
GROUP BY user_id, prosthesis_id, report_date
