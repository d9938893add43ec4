-- Signed webhooks: endpoints per owner, one signing secret per owner, and a transactional outbox.
--
-- The outbox is filled by a trigger on jobs: whatever code path moves a job to a terminal status
-- (worker, cancel, janitor, operator), the event and its deliveries commit or roll back with it,
-- so a crash can neither lose nor invent an event.

CREATE TABLE webhook_secrets (
    owner                text PRIMARY KEY,
    secret               text NOT NULL,
    previous_secret      text,
    previous_valid_until timestamptz,
    rotated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    owner                text NOT NULL,
    url                  text NOT NULL,
    events               text[] NOT NULL CHECK (cardinality(events) > 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    -- Circuit breaker: closed (deliver), open (paused until probe_at), half_open (one probe in flight).
    breaker_state        text NOT NULL DEFAULT 'closed' CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at            timestamptz,
    probe_at             timestamptz
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner) WHERE deleted_at IS NULL;

ALTER TABLE jobs ADD COLUMN webhook_url text;

CREATE TABLE webhook_events (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id     uuid NOT NULL REFERENCES jobs (id),
    owner      text NOT NULL,
    type       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The job row as it was at the transition (to_jsonb(NEW)); the body is built from it.
    job        jsonb NOT NULL
);
CREATE INDEX webhook_events_job ON webhook_events (job_id);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL REFERENCES webhook_events (id),
    endpoint_id     uuid REFERENCES webhook_endpoints (id),
    owner           text NOT NULL,
    url             text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_delivery_attempts (
    delivery_id     uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    latency_ms      integer,
    response_status integer,
    error           text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE FUNCTION mediaq_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_type text := 'job.' || NEW.status;
    event_id   uuid;
BEGIN
    IF NEW.webhook_url IS NULL AND NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e
         WHERE e.owner = NEW.owner AND e.deleted_at IS NULL AND event_type = ANY (e.events)
    ) THEN
        RETURN NEW;
    END IF;
    INSERT INTO webhook_events (job_id, owner, type, job)
    VALUES (NEW.id, NEW.owner, event_type, to_jsonb(NEW))
    RETURNING id INTO event_id;
    INSERT INTO webhook_deliveries (event_id, endpoint_id, owner, url)
    SELECT event_id, e.id, e.owner, e.url FROM webhook_endpoints e
     WHERE e.owner = NEW.owner AND e.deleted_at IS NULL AND event_type = ANY (e.events);
    IF NEW.webhook_url IS NOT NULL THEN
        INSERT INTO webhook_deliveries (event_id, owner, url) VALUES (event_id, NEW.owner, NEW.webhook_url);
    END IF;
    PERFORM pg_notify('mediaq_webhooks', '');
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_webhook_outbox
AFTER UPDATE OF status ON jobs
FOR EACH ROW
WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('succeeded', 'failed', 'canceled', 'expired'))
EXECUTE FUNCTION mediaq_webhook_outbox();
