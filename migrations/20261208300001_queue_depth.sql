-- The work that wants a worker, in one row, for autoscalers (docs/DEPLOY.md, "Kubernetes:
-- autoscaling"). KEDA's postgresql trigger reads `demand` (deploy/k8s/components/keda); the API's
-- /metrics serves the same figure as `mediaq_worker_demand` (for an HPA through prometheus-adapter).
--   due                   queued jobs a worker may claim now: new ones, hand-backs (a worker stopped
--                         by SIGTERM puts its job back due at once), retries whose backoff is over
--   live_uploads          resumable uploads still arriving that are in the live lane (their first
--                         bytes passed the content check): a worker converts them as the rest arrives
--   running               jobs a worker is converting (each holds one worker slot)
--   retries_later         retries waiting out their backoff: not counted until due
--   uploads_without_bytes uploads waiting for bytes out of the queue (nothing checked yet, their key
--                         at its live limit, or parked on an idle upload): no task, not counted
--   demand                due + live_uploads + running: the worker slots wanted now. Counting the
--                         running jobs keeps a scale-in from taking a worker that is still busy
--                         while the queue is empty (the replica count falls only when one is idle)
CREATE VIEW mediaq_worker_demand AS
WITH work AS (
    SELECT j.status, coalesce(j.next_attempt_at, j.created_at) <= now() AS is_due,
           j.next_attempt_at > now() AS later, NOT j.awaiting_bytes AS has_bytes
      FROM jobs j
     WHERE j.status IN ('receiving', 'queued', 'processing')
)
SELECT count(*) FILTER (WHERE status = 'queued' AND is_due) AS due,
       count(*) FILTER (WHERE status = 'receiving' AND has_bytes AND is_due) AS live_uploads,
       count(*) FILTER (WHERE status = 'processing') AS running,
       count(*) FILTER (WHERE status IN ('queued', 'receiving') AND later) AS retries_later,
       count(*) FILTER (WHERE status = 'receiving' AND NOT has_bytes) AS uploads_without_bytes,
       count(*) FILTER (WHERE (status = 'queued' AND is_due) OR (status = 'receiving' AND has_bytes AND is_due)
                           OR status = 'processing') AS demand
  FROM work;
