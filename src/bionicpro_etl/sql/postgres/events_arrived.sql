-- The events received in ($5, $4] (the arrival window: a BRIN scan of the newest blocks), with
-- their report day found among the days $1..$2 of the zone $3 by a binary search of the days'
-- starts (width_bucket), not by a zone conversion per row: $1 - 1 for an event before $1
-- (beyond the look-back), $2 + 1 for one after $2 or from a broken clock (telemetry_partials.sql):
-- no day of the run. Slot: $5, or $6 for those received after $6.
SELECT
    CASE
        WHEN event_time <= received_at + make_interval(secs => $9)
            AND event_time >= $10
            AND event_time < $11
        THEN $1::date + width_bucket(
            event_time,
            (
                SELECT array_agg(day AT TIME ZONE $3::text ORDER BY day)
                FROM generate_series($1::date::timestamp, ($2::date + 1)::timestamp, interval '1 day') AS day
            )
        ) - 1
        ELSE $2::date + 1
    END AS report_date,
    user_id,
    prosthesis_id,
    CASE WHEN received_at > $6::timestamptz THEN $6::timestamptz ELSE $5::timestamptz END AS slot,
    action_type,
    response_time_ms,
    battery_level,
    duration_seconds
FROM public.telemetry_events
WHERE received_at > $5::timestamptz
  AND received_at <= $4::timestamptz
  AND ($7 = 1 OR abs(hashint8(user_id)::bigint) % $7 = $8)
