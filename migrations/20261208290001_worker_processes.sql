-- Worker processes as they announce themselves at start: who they are, where they run, and the
-- sandbox layers their start-up self-check found. `last_seen` is their heartbeat; a process is
-- alive while it beat within three heartbeats and did not say it stopped.
CREATE TABLE worker_processes (
    name         text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    concurrency  integer NOT NULL CHECK (concurrency > 0),
    -- The self-check's layer report (worker/src/selfcheck.rs `LayerReport`), and its missing layers.
    sandbox      jsonb NOT NULL,
    sandbox_missing text[] NOT NULL DEFAULT '{}',
    heartbeat_s  double precision NOT NULL CHECK (heartbeat_s > 0),
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
CREATE INDEX worker_processes_last_seen_idx ON worker_processes (last_seen);
