-- How far this run reads arrivals: the latest received_at, but not within the last
-- %(lag)s seconds, where rows of transactions still in flight could yet appear (psycopg).
SELECT max(received_at)
FROM public.telemetry_events
WHERE received_at <= now() - make_interval(secs => %(lag)s)
