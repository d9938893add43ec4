-- Persistent retry state: when the next attempt may run, and the attempt count a requeue
-- started from (retries are allowed while attempts - attempts_base < MEDIAQ_MAX_ATTEMPTS).
ALTER TABLE jobs ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE jobs ADD COLUMN attempts_base integer NOT NULL DEFAULT 0;

-- Dead letters: jobs that ended failed, with their last attempt's cause.
CREATE VIEW dead_letter_jobs AS
SELECT j.id, j.error_code, j.error_message, j.attempts, j.input_filename, j.created_at, j.finished_at,
       a.worker AS last_worker, a.exit_status AS last_exit_status
FROM jobs j
LEFT JOIN LATERAL (
    SELECT worker, exit_status FROM job_attempts WHERE job_id = j.id ORDER BY attempt DESC LIMIT 1
) a ON true
WHERE j.status = 'failed';
