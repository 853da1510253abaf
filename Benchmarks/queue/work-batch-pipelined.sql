-- As work-batch.sql, with each job's transaction pipelined: BEGIN, effect, completion and
-- COMMIT go out in one write and come back in one read (pgbench -M prepared).
WITH picked AS (
    SELECT id FROM poold.jobs
    WHERE queue = 'q' AND state IN ('available', 'scheduled', 'retryable') AND run_at <= now()
    ORDER BY priority, run_at, id LIMIT 8 FOR UPDATE SKIP LOCKED),
taken AS (
    UPDATE poold.jobs j SET state = 'running', attempt = j.attempt + 1, lease = :client_id, attempted_at = now()
    FROM picked WHERE j.id = picked.id RETURNING j.id)
SELECT ids[1] AS j1, ids[2] AS j2, ids[3] AS j3, ids[4] AS j4, ids[5] AS j5, ids[6] AS j6, ids[7] AS j7, ids[8] AS j8
FROM (SELECT array_agg(id ORDER BY id) AS ids FROM taken) s \gset
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j1, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j1 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j2, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j2 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j3, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j3 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j4, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j4 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j5, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j5 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j6, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j6 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j7, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j7 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
\startpipeline
BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j8, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j8 AND state = 'running' AND lease = :client_id;
COMMIT;
\endpipeline
