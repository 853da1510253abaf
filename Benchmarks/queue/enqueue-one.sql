INSERT INTO poold.jobs (queue, params) VALUES ('q', '[1]');
