-- Upload tokens: short-lived, single-use credentials a backend mints for a browser form.
CREATE TABLE upload_tokens (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    secret_sha256 bytea NOT NULL,
    owner         text NOT NULL,
    api_key_id    text NOT NULL REFERENCES api_keys (id),
    max_bytes     bigint NOT NULL CHECK (max_bytes > 0),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    job_id        uuid REFERENCES jobs (id) ON DELETE SET NULL
);
