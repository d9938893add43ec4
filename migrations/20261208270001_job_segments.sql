-- The fragmented-MP4 segments of an attempt's stream (playback while the job converts): one row
-- per segment the worker checked and stored (`Storage::stream_key`), in order from 0. The
-- objects live under the job's output prefix, so cancel and retention delete them with the MP4.
CREATE TABLE job_segments (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt > 0),
    seq         integer NOT NULL CHECK (seq >= 0),
    duration_s  double precision NOT NULL CHECK (duration_s >= 0),
    bytes       bigint NOT NULL CHECK (bytes > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt, seq)
);
