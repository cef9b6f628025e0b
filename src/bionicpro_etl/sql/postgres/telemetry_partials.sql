-- Partial aggregates per (report day, user, prosthesis, arrival slot) of the events that the
-- subquery selects (events_of_day.sql or events_arrived.sql): mergeable, so that the day's
-- state in ClickHouse (telemetry_state) adds them up. ADBC parameters, the same in both sources:
-- $4 the run's arrival bound, $5 the point after which it reads arrivals (null: it reads none),
-- $6 the point after which the next run reads them again (the slot of the arrivals after it),
-- $7 and $8 the shard (of $7, by a hash of user_id) so that several workers share the read,
-- $9 how many seconds an event time may be ahead of its arrival and [$10, $11) the instants
-- whose day the mart can hold (an event outside either is a broken clock's, no day's).
-- Valid measurements (contract section 5): response_time_ms in [0, 60000], battery_level in
-- [0, 100], duration_seconds in [0, 86400]. Anything else (null, negative, NaN, infinite, absurdly
-- large) counts as not measured, and the event still counts as an action. The ranges also keep
-- every sum finite: PostgreSQL raises on a float8 overflow (the sum of two 1e308).
SELECT
    report_date,
    user_id,
    prosthesis_id,
    slot,
    count(*) AS total_actions,
    coalesce(sum(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000), 0) AS response_sum,
    max(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000) AS max_response_time,
    min(response_time_ms) FILTER (WHERE response_time_ms BETWEEN 0 AND 60000) AS min_response_time,
    count(*) FILTER (WHERE action = 'grasp') AS grasp_count,
    count(*) FILTER (WHERE action = 'release') AS release_count,
    count(*) FILTER (WHERE action = 'flex') AS flex_count,
    coalesce(sum(battery_level) FILTER (WHERE battery_level BETWEEN 0 AND 100), 0) AS battery_sum,
    min(battery_level) FILTER (WHERE battery_level BETWEEN 0 AND 100) AS min_battery_level,
    coalesce(sum(duration_seconds) FILTER (WHERE duration_seconds BETWEEN 0 AND 86400), 0) AS usage_seconds,
    -- Not measured (null or invalid), per metric, for the averages' counts, and actions said to
    -- last longer than a day (invalid too; a sensor in the wrong unit shows here): for the
    -- quality checks.
    count(*) FILTER (WHERE NOT coalesce(response_time_ms BETWEEN 0 AND 60000, false)) AS invalid_response_count,
    count(*) FILTER (WHERE NOT coalesce(battery_level BETWEEN 0 AND 100, false)) AS invalid_battery_count,
    count(*) FILTER (WHERE NOT coalesce(duration_seconds BETWEEN 0 AND 86400, false)) AS invalid_duration_count,
    count(*) FILTER (WHERE duration_seconds > 86400 AND duration_seconds < 'Infinity') AS absurd_duration_count
FROM
(
    -- The action as the contract counts it, lower(trim(action_type)), which PostgreSQL computes
    -- once per aggregate that uses it (three times a row), each a case mapping per character:
    -- a fifth of the query's time on the benchmark. The three words as devices send them are
    -- that already, so only other spellings go through it.
    SELECT
        *,
        CASE
            WHEN action_type IN ('grasp', 'release', 'flex') THEN action_type
            ELSE lower(trim(action_type))
        END AS action
    FROM ({events}) AS typed
) AS events
GROUP BY report_date, user_id, prosthesis_id, slot
