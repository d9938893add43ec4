-- The per-key quota check (unfinished jobs, bytes in 24 h) runs before every upload.
CREATE INDEX jobs_api_key_created_idx ON jobs (api_key_id, created_at);
