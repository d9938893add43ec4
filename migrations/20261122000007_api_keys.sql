-- API keys (only the SHA-256 of the secret is stored) and ownership of jobs.
CREATE TABLE api_keys (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name          text NOT NULL,
    owner         text NOT NULL,
    scopes        text[] NOT NULL,
    secret_sha256 bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Jobs created before keys existed belong to no one but admins.
ALTER TABLE jobs ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN api_key_id text;
CREATE INDEX jobs_owner_id_idx ON jobs (owner, id DESC);
