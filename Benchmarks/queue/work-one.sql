-- Fetch one job, then run it: its effect and its fenced completion in one transaction.
WITH picked AS (
    SELECT id FROM poold.jobs
    WHERE queue = 'q' AND state IN ('available', 'scheduled', 'retryable') AND run_at <= now()
    ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE poold.jobs j SET state = 'running', attempt = j.attempt + 1, lease = :client_id, attempted_at = now()
FROM picked WHERE j.id = picked.id RETURNING j.id AS jid, j.attempt AS att \gset
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:jid, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :jid AND state = 'running' AND attempt = :att AND lease = :client_id;
COMMIT;
