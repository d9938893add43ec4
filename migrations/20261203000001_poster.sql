-- The poster (issue #19): a JPEG of a representative frame near the start of a succeeded video
-- job, stored beside its MP4 (`outputs/{id}-a{n}.jpg`), served at GET /v1/jobs/{id}/poster with
-- its SHA-256 as the ETag. NULL for audio-only jobs, for jobs finished before this column
-- existed, and when the converter could not make one. All three are set together.
ALTER TABLE jobs
    ADD COLUMN poster_key text,
    ADD COLUMN poster_size bigint CHECK (poster_size >= 0),
    ADD COLUMN poster_sha256 text,
    ADD CONSTRAINT jobs_poster_complete
        CHECK ((poster_key IS NULL) = (poster_size IS NULL) AND (poster_key IS NULL) = (poster_sha256 IS NULL));
