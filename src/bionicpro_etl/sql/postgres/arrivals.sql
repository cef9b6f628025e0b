-- Report days that received events after the watermark, up to the run's upper bound, with how
-- many: the days a run must rebuild (psycopg parameters). A first run has no watermark: its
-- look-back days up to its own are probed (arrival_days.sql), and this asks only for the events
-- dated from %(since)s on.
-- Rows are counted per 15-minute UTC bucket (date_bin: integer arithmetic) and only the buckets
-- are put into the report zone: on the benchmark's next night (10.3 M arrivals) that is 1.3 s,
-- where the zone conversion of every row took 3.0 s. Exact, because no bucket straddles two
-- report days: every zone's UTC offset has been a multiple of 15 minutes since 1979 (tzdata).
-- An event time from a broken clock (a day the mart cannot hold, [%(earliest)s, %(latest)s), or
-- more than %(tolerance)s seconds after the row arrived: 1960, 2200, ±infinity) is no report day:
-- its bucket and report_date are null, and the run counts those events.
-- Rows that commit late: received_at defaults to the start of the inserting transaction, so a
-- transaction open longer than the arrival lag (a backlog uploaded in one transaction; a replica
-- that shows rows late) adds rows at or below a watermark already read. Each run counts, per
-- report day, the events received in the window below its bound, (%(own_from)s, %(until)s]
-- (`own`); the next run counts the previous run's window, (%(previous_from)s, %(watermark)s],
-- again (`previous`): a day whose count grew received rows that committed late. Both windows in
-- the same pass, so what they cost is the rows of the window (BRIN on received_at).
SELECT
    (bucket AT TIME ZONE %(tz)s)::date AS report_date,
    sum(events)::bigint AS events,
    sum(previous)::bigint AS previous,
    sum(own)::bigint AS own
FROM (
    SELECT
        CASE
            WHEN event_time >= %(earliest)s AND event_time < %(latest)s
                AND event_time <= received_at + make_interval(secs => %(tolerance)s)
            THEN date_bin('15 minutes', event_time, '2000-01-01 00:00:00+00')
        END AS bucket,
        count(*) FILTER (
            WHERE received_at > %(watermark)s::timestamptz
               OR (%(watermark)s::timestamptz IS NULL AND event_time >= %(since)s)
        ) AS events,
        count(*) FILTER (
            WHERE received_at > %(previous_from)s::timestamptz
              AND received_at <= %(watermark)s::timestamptz
        ) AS previous,
        count(*) FILTER (WHERE received_at > %(own_from)s::timestamptz) AS own
    FROM public.telemetry_events
    WHERE received_at <= %(until)s
      AND (
          -- least() skips nulls: the lowest of the windows' starts that are there
          received_at > least(%(watermark)s::timestamptz, %(previous_from)s::timestamptz,
                              %(own_from)s::timestamptz)
          OR (%(watermark)s::timestamptz IS NULL AND event_time >= %(since)s)
      )
    GROUP BY bucket
) AS buckets
GROUP BY report_date
