-- Fair scheduling reads a tenant's backlog on every first delivery of an
-- image (src/meta/sqlite_pace.rs). Its plan needs only the jobs with images
-- waiting in the queue (never more than a few: the tenant's `ahead`) and the
-- first few in turn order with images held back, not every job of the
-- tenant that is unfinished: one index for each half of that read. The
-- held-back index also serves the sweep's search for tenants.
DROP INDEX jobs_backlog;
DROP INDEX jobs_unreleased;
CREATE INDEX jobs_waiting ON jobs (tenant) WHERE taken < released;
CREATE INDEX jobs_held_back ON jobs (tenant, turn, created_at) WHERE released < image_count;
