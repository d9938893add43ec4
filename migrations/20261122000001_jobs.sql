-- Jobs: one row per accepted upload, the record clients poll.
CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'processing', 'succeeded', 'failed', 'canceled')),
    progress            real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error_code          text,
    error_message       text,
    -- input facts, checked while streaming the upload
    input_filename      text NOT NULL,
    input_size          bigint NOT NULL CHECK (input_size > 0),
    input_sha256        text NOT NULL CHECK (input_sha256 ~ '^[0-9a-f]{64}$'),
    input_content_type  text NOT NULL,
    input_key           text NOT NULL,
    -- output facts, filled by the worker on success
    output_key          text,
    output_size         bigint,
    output_sha256       text,
    output_duration_s   double precision,
    output_width        integer,
    output_height       integer,
    output_video_codec  text,
    output_audio_codec  text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_status_created_idx ON jobs (status, created_at);

-- Audit trail: append-only, enforced by the database itself.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    job_id      uuid,
    request_id  text,
    client_ip   inet,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_events_job_idx ON audit_events (job_id, at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
