-- Fair scheduling takes turns per tenant (see src/jobs/pacing.rs): when
-- each job was last served (Unix ms; its creation until then) orders its
-- tenant's jobs, and a tenant's jobs with images still waiting in the queue
-- or held back are found by tenant.
ALTER TABLE jobs ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobs_backlog ON jobs (tenant, turn) WHERE taken < image_count;
-- The sweep now looks for tenants, not jobs, holding images back.
DROP INDEX jobs_unreleased;
CREATE INDEX jobs_unreleased ON jobs (tenant) WHERE released < image_count;
