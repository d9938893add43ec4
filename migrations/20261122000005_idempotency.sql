-- Idempotency-Key on POST /v1/jobs (Stripe's semantics): a key is claimed before the body is
-- read ('in_progress', with a lease so a crashed request cannot hold it forever) and completed
-- in the job's own transaction with the request's fingerprint. Keys expire after 24 hours.
CREATE TABLE idempotency_keys (
    key           text PRIMARY KEY,
    status        text NOT NULL CHECK (status IN ('in_progress', 'completed')),
    fingerprint   text,
    job_id        uuid REFERENCES jobs (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
