-- When a job's stored files (input and output) were deleted: by a cancellation or DELETE of a
-- finished job (later also by retention).
ALTER TABLE jobs ADD COLUMN files_deleted_at timestamptz;

-- An attempt can end because its job was canceled, or because its worker shut down and
-- handed the job back.
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'superseded', 'canceled', 'interrupted'));
