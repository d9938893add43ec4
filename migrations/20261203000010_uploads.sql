-- Resumable uploads (tus 1.0): the job exists from the upload's creation, in status `receiving`
-- while bytes arrive (and no worker holds it yet). Its input is the upload's segments, one stored
-- object per acknowledged PATCH, until the upload completes; its size grows with them, and its
-- SHA-256 is known once the last byte is in.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('receiving', 'queued', 'processing', 'succeeded', 'failed', 'canceled', 'expired'));
ALTER TABLE jobs ALTER COLUMN input_sha256 DROP NOT NULL;
ALTER TABLE jobs DROP CONSTRAINT jobs_input_size_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_input_size_check CHECK (input_size >= 0);

CREATE TABLE uploads (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    -- Upload-Length; NULL while deferred (a recorder does not know it yet).
    length        bigint CHECK (length >= 0),
    -- Upload-Offset: bytes acknowledged (durable in storage); always the sum of the segments.
    received      bigint NOT NULL DEFAULT 0 CHECK (received >= 0),
    expires_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    -- Upload-Metadata as sent (base64 values), replayed on HEAD.
    metadata      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (length IS NULL OR received <= length)
);

-- Unfinished uploads, for the janitor's expiry sweep.
CREATE INDEX uploads_unfinished_idx ON uploads (expires_at) WHERE completed_at IS NULL;

CREATE TABLE upload_segments (
    job_id  uuid NOT NULL REFERENCES uploads (job_id) ON DELETE CASCADE,
    start   bigint NOT NULL CHECK (start >= 0),
    size    bigint NOT NULL CHECK (size > 0),
    key     text NOT NULL,
    PRIMARY KEY (job_id, start)
);
