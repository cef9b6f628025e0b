-- The events of one report day, [$1, $2) in event_time (a BRIN scan of the day's blocks), $3
-- being that day (a constant: no zone conversion per row). Only those received by the bound $4,
-- and by $5 when arrivals after it are read (events_arrived.sql reads those), so that no event
-- is in two partial rows. Slot: 1970-01-01, or $6 for those received after $6. Not those of a
-- broken clock (telemetry_partials.sql).
SELECT
    $3::date AS report_date,
    user_id,
    prosthesis_id,
    CASE WHEN received_at > $6::timestamptz THEN $6::timestamptz ELSE 'epoch'::timestamptz END AS slot,
    action_type,
    response_time_ms,
    battery_level,
    duration_seconds
FROM public.telemetry_events
WHERE event_time >= $1
  AND event_time < $2
  AND received_at <= $4::timestamptz
  AND (received_at <= $5::timestamptz OR $5::timestamptz IS NULL)
  AND event_time <= received_at + make_interval(secs => $9)
  AND event_time >= $10
  AND event_time < $11
  AND ($7 = 1 OR abs(hashint8(user_id)::bigint) % $7 = $8)
