-- Issue 18, step 1: the queue table in the shape the durable queues would use, for the premise
-- check (scripts/queue-spike.sh). Not used by poold yet.
DROP SCHEMA IF EXISTS poold CASCADE;
CREATE SCHEMA poold;

CREATE TABLE poold.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL,
    -- available, scheduled, running, retryable, completed, discarded, cancelled
    state         text        NOT NULL DEFAULT 'available',
    priority      smallint    NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempt       int         NOT NULL DEFAULT 0,
    max_attempts  int         NOT NULL DEFAULT 20,
    -- the epoch of the host lease a running job belongs to: completions and rescues are fenced on it
    lease         bigint,
    params        jsonb,
    unique_key    text,
    errors        jsonb       NOT NULL DEFAULT '[]',
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    finished_at   timestamptz
) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- What a fetch reads: only jobs that may run, in order. Finished rows are not in it.
CREATE INDEX jobs_fetch ON poold.jobs (queue, priority, run_at, id) WHERE state IN ('available', 'scheduled', 'retryable');
-- What a rescue reads: the running jobs of a dead lease.
CREATE INDEX jobs_running ON poold.jobs (lease) WHERE state = 'running';
-- unique_key among unfinished jobs, enforced by the index (ON CONFLICT answers the existing job).
CREATE UNIQUE INDEX jobs_unique ON poold.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded', 'cancelled');

-- A job's effect, for the spike: what exactly-once means is one row per job here.
CREATE TABLE poold.effects (job bigint PRIMARY KEY, v int NOT NULL);
GRANT USAGE ON SCHEMA poold TO poold;
GRANT ALL ON ALL TABLES IN SCHEMA poold TO poold;
