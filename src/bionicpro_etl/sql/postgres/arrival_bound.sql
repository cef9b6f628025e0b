-- How far this run reads arrivals: the latest received_at after %(start)s (arrival_floor.sql's
-- answer, else the watermark), but not within the last %(lag)s seconds, where rows of
-- transactions still in flight could yet appear (psycopg). Bounded below, so BRIN reads only
-- the newest blocks.
SELECT max(received_at)
FROM public.telemetry_events
WHERE received_at > coalesce(%(start)s::timestamptz, '-infinity')
  AND received_at <= now() - make_interval(secs => %(lag)s)
