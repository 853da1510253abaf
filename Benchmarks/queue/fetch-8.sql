-- The fetch of work-batch.sql (written out by queue-spike.sh): 8 jobs in one statement, the
-- host's demand, their ids in :j1 … :j8.
WITH picked AS (
    SELECT id FROM poold.jobs
    WHERE queue = 'q' AND state IN ('available', 'scheduled', 'retryable') AND run_at <= now()
    ORDER BY priority, run_at, id LIMIT 8 FOR UPDATE SKIP LOCKED),
taken AS (
    UPDATE poold.jobs j SET state = 'running', attempt = j.attempt + 1, lease = :client_id, attempted_at = now()
    FROM picked WHERE j.id = picked.id RETURNING j.id)
SELECT ids[1] AS j1, ids[2] AS j2, ids[3] AS j3, ids[4] AS j4, ids[5] AS j5, ids[6] AS j6, ids[7] AS j7, ids[8] AS j8
FROM (SELECT array_agg(id ORDER BY id) AS ids FROM taken) s \gset
