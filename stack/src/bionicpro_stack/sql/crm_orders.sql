-- The reference CRM service's store: one row per CRM item (an order of a prosthesis).
-- Loosely typed on purpose (order_date is text): the CRM is a source we do not control,
-- and the pipeline must meet the bad items a real one serves.
CREATE TABLE IF NOT EXISTS public.crm_orders (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint      NOT NULL,
    email         text        NOT NULL,
    first_name    text        NOT NULL,
    last_name     text        NOT NULL,
    prosthesis_id text        NOT NULL,
    order_date    text,
    status        text        NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS crm_orders_updated_at_idx ON public.crm_orders (updated_at);
