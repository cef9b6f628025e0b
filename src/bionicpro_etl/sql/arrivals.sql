-- Report days that received events after the watermark, up to the run's upper bound, with how
-- many: the days a run must rebuild (psycopg parameters). A first run has no watermark and looks
-- at the look-back window only.
SELECT (event_time AT TIME ZONE %(tz)s)::date AS report_date, count(*) AS events
FROM public.telemetry_events
WHERE received_at <= %(until)s
  AND (
      received_at > %(watermark)s::timestamptz
      OR (%(watermark)s::timestamptz IS NULL AND event_time >= %(lookback_start)s)
  )
GROUP BY report_date
