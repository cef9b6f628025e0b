-- The telemetry source (contract section 3): one row per action a prosthesis performed.
CREATE TABLE IF NOT EXISTS public.telemetry_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint           NOT NULL,
    prosthesis_id    text             NOT NULL,
    event_time       timestamptz      NOT NULL,
    received_at      timestamptz      NOT NULL DEFAULT now(),
    action_type      text             NOT NULL,
    response_time_ms double precision,
    battery_level    double precision,
    duration_seconds double precision
);

-- A report day is a range of event_time: this index makes reading one day a range scan.
CREATE INDEX IF NOT EXISTS telemetry_events_event_time_idx
    ON public.telemetry_events (event_time);

-- Late uploads are found by arrival time (the incremental watermark).
CREATE INDEX IF NOT EXISTS telemetry_events_received_at_idx
    ON public.telemetry_events (received_at);
