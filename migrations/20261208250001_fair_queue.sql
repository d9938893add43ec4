-- The fair queue: two lanes, a fair order across tenants, and a priority within each tenant.
--
-- Lanes: `cpu` (an input that is whole: a stored file or a complete upload) and `live` (a
-- resumable upload converted while it arrives), each its own apalis queue, served by slots of
-- their own in every worker.
-- Fair order (start-time fair queuing): a job placed in the queue gets the tag
-- max(the clock, its tenant's last waiting tag + 1); workers claim the lowest tag first (apalis'
-- `priority` is FAIR_BASE - tag); claiming a job moves the clock to its tag. A tenant with 500
-- jobs waiting therefore has tags far ahead of the clock, and another tenant's new job lands
-- next in line. Within a tenant, a job of higher priority takes the place of its lower ones.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2);
ALTER TABLE jobs ADD COLUMN lane text CHECK (lane IN ('cpu', 'live'));
ALTER TABLE jobs ADD COLUMN fair_tag bigint;
-- The apalis task that carries the job now (its priority follows the tag).
ALTER TABLE jobs ADD COLUMN task_id text;
-- A resumable upload's job waiting for bytes, out of the queue: its first bytes not yet checked,
-- its key at its live limit, or its live attempt parked on an idle upload. The upload's next
-- PATCH queues it.
ALTER TABLE jobs ADD COLUMN awaiting_bytes boolean NOT NULL DEFAULT false;

CREATE TABLE queue_clock (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    virtual_time  bigint NOT NULL DEFAULT 0
);
INSERT INTO queue_clock DEFAULT VALUES;

-- Waiting jobs in line order (position and ETA), and a tenant's last tag.
CREATE INDEX jobs_line_idx ON jobs (lane, fair_tag) WHERE status IN ('queued', 'receiving');
CREATE INDEX jobs_owner_line_idx ON jobs (owner, fair_tag) WHERE status IN ('queued', 'receiving');
-- Live jobs per key (the live limit).
CREATE INDEX jobs_live_key_idx ON jobs (api_key_id) WHERE lane = 'live' AND status IN ('receiving', 'processing');

-- An attempt parked on an idle upload (its slot handed back; the job waits for bytes).
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('succeeded', 'failed', 'superseded', 'canceled', 'interrupted', 'parked'));
