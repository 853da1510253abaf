INSERT INTO poold.jobs (queue, params) SELECT 'q', jsonb_build_array(g) FROM generate_series(1, 100) g;
