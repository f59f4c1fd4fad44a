-- Fair scheduling's counters (see src/jobs/pacing.rs): images in the job,
-- how many of them (a prefix, in index order) have been handed to the queue,
-- and how many a worker has taken out of it. The rest are held back.
-- Jobs recorded before this keep image_count 0: nothing left to release.
ALTER TABLE jobs ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN taken INTEGER NOT NULL DEFAULT 0;

-- The release sweep's query: jobs still holding images back.
CREATE INDEX jobs_unreleased ON jobs (created_at) WHERE released < image_count;

-- Per-tenant quotas count a tenant's live jobs' unfinished images.
-- Jobs recorded before this have no tenant column value and count for none.
ALTER TABLE jobs ADD COLUMN tenant TEXT;
CREATE INDEX jobs_by_tenant ON jobs (tenant) WHERE tenant IS NOT NULL;
