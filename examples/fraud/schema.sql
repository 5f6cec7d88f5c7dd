-- Tributary fraud example: the OLTP schema that ingest streams into Kafka
-- (cdc.public.users, cdc.public.transactions, cdc.public.labels).
--
-- This file exists twice with identical content: deploy/postgres/init.sql (run by the
-- postgres container of docker-compose.yml on its first start) and examples/fraud/schema.sql
-- (the example's schema, used outside compose). A test checks they are identical.
-- Every statement is idempotent so the file can be applied to an existing database.

CREATE TABLE IF NOT EXISTS public.users (
    user_id    text PRIMARY KEY,
    email      text NOT NULL,
    country    text,
    signup_at  timestamptz DEFAULT now(),
    segment    text
);

CREATE TABLE IF NOT EXISTS public.transactions (
    txn_id      bigserial PRIMARY KEY,
    user_id     text NOT NULL REFERENCES public.users,
    merchant_id text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    currency    text DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS transactions_user_id_idx ON public.transactions (user_id);

CREATE TABLE IF NOT EXISTS public.labels (
    prediction_id text PRIMARY KEY,
    txn_id        bigint,
    user_id       text,
    merchant_id   text,
    is_fraud      boolean NOT NULL,
    labeled_at    timestamptz NOT NULL DEFAULT now()
);

-- Full old row images in the WAL, so update and delete events carry a complete `before`.
ALTER TABLE public.transactions REPLICA IDENTITY FULL;

-- ingest connects as this role and needs to open a logical replication connection.
-- Guarded because a throw-away development cluster may not have a role of that name.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tributary') THEN
        ALTER ROLE tributary WITH REPLICATION;
    END IF;
END
$$;
