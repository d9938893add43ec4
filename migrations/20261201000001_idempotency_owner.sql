-- Idempotency keys belong to their owner: tenant B sending the key tenant A used is another key
-- (before, it got A's 422, A's job as a 404, or blocked A with 409). Each claim also carries a
-- lease id, so that a request whose lease ran out and was taken over can no longer complete
-- (or release) the key: at most one job per key.
ALTER TABLE idempotency_keys ADD COLUMN owner text NOT NULL DEFAULT '';
UPDATE idempotency_keys k SET owner = j.owner FROM jobs j WHERE k.job_id = j.id;
ALTER TABLE idempotency_keys ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE idempotency_keys ADD COLUMN lease uuid;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (owner, key);
