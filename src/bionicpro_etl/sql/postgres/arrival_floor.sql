-- A start for arrival_bound.sql (psycopg parameters): the latest received_at, after the
-- watermark and not within the last %(lag)s seconds, among the rows of the table's last
-- %(pages)s pages (plan.py: a few first, then 4096, 32 MB), read by a TID range scan. Rows land
-- in arrival order, so this is the newest arrival or close to it, and the BRIN index on
-- received_at leaves arrival_bound.sql only the block ranges past it; without it, a first run
-- (no watermark) read the whole table. It is the received_at of a row that counts, whatever the
-- order of the rows, so the bound stays exact. IS TRUE keeps the received_at conditions a
-- filter: given a watermark, the planner preferred the BRIN index to the TID range, and read
-- every arrival since the watermark to find the newest (the benchmark's quarter-hour runs:
-- 150,000 rows instead of 2,000, a second read of each arrival).
SELECT max(received_at)
FROM public.telemetry_events
WHERE ctid >= (
        SELECT ('(' || greatest(pg_relation_size('public.telemetry_events')
            / current_setting('block_size')::bigint - %(pages)s, 0) || ',0)')::tid
    )
  AND (
      received_at > coalesce(%(watermark)s::timestamptz, '-infinity')
      AND received_at <= now() - make_interval(secs => %(lag)s)
  ) IS TRUE
