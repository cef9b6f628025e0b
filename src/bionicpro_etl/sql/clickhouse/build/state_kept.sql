-- What the state keeps of the run's days that it does not read whole: the slots below the point
-- it reads arrivals after (arrivals no run reads again), folded into one. Slots from there on
-- the run read again, so state_merge.sql replaces them with what it read, never adds to them: a
-- retry, an overlap re-read or a second run over the same arrivals counts no event twice.
INSERT INTO bionicpro_staging.{kept:Identifier}
SELECT * REPLACE (toDateTime64(0, 6, 'UTC') AS slot)
FROM
(
    -- a subquery: in a WHERE beside the REPLACE, `slot` would be the folded one
    SELECT *
    FROM bionicpro_reports.telemetry_state
    WHERE report_date IN {days:Array(Date)}
      AND report_date NOT IN {read_whole:Array(Date)}
      AND slot < {reread_from:Nullable(DateTime64(6, 'UTC'))}
)
