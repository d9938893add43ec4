-- Retention: a finished job whose files were deleted by the janitor reads 'expired'.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'processing', 'succeeded', 'failed', 'canceled', 'expired'));
CREATE INDEX jobs_retention_idx ON jobs (finished_at) WHERE files_deleted_at IS NULL;
