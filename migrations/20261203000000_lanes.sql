-- Fair scheduling's two lanes (see src/jobs/pacing.rs): the queue a job's
-- images are released to, chosen at submission. Jobs recorded before lanes
-- existed are bulk, the queue they were in.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'bulk';
