-- One row per attempt: who ran it, how it ended, and what it cost (wait4 rusage).
CREATE TABLE job_attempts (
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt         integer NOT NULL CHECK (attempt > 0),
    worker          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text CHECK (outcome IN ('succeeded', 'failed', 'superseded')),
    error_code      text,
    exit_status     text,
    wall_s          double precision,
    user_cpu_s      double precision,
    system_cpu_s    double precision,
    peak_rss_bytes  bigint,
    PRIMARY KEY (job_id, attempt)
);
