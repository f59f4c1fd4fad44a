-- The quotas read a tenant's usage twice per submission
-- (src/meta/sqlite_pace.rs): images queued or running, and bytes stored.
-- Summed over the tenant's live jobs, that read grew with the jobs a tenant
-- keeps for the retention (in open mode, everyone's: a day of them). Each
-- tenant's totals are now kept here by the triggers below as its jobs
-- change, so the read is one row, less the jobs that expired and wait for
-- the purge (few: they are found through `jobs_usage`'s expiry order).
--
-- A job counts from its record until it is marked deleted or removed; an
-- expired one still counts here (its figures no longer change: writes to
-- it are refused) and is subtracted by the read until the purge removes it.
CREATE TABLE tenant_usage (
    tenant TEXT PRIMARY KEY,
    -- Images queued or running.
    active INTEGER NOT NULL DEFAULT 0,
    -- Uploads and results.
    bytes INTEGER NOT NULL DEFAULT 0
);

INSERT INTO tenant_usage (tenant, active, bytes)
SELECT jobs.tenant,
       COALESCE(SUM(counts.queued + counts.processing), 0),
       SUM(jobs.input_bytes + COALESCE(counts.output_bytes, 0))
FROM jobs LEFT JOIN job_counts AS counts ON counts.job_id = jobs.id
WHERE jobs.deleted = 0
GROUP BY jobs.tenant;

-- A new job: its uploads (its images follow, through job_counts).
CREATE TRIGGER usage_job_recorded AFTER INSERT ON jobs
BEGIN
    INSERT INTO tenant_usage (tenant, bytes) VALUES (NEW.tenant, NEW.input_bytes)
    ON CONFLICT (tenant) DO UPDATE SET bytes = bytes + excluded.bytes;
END;

-- A counted job's images queued or running, and its results' bytes, as
-- `job_counts` (kept by the image triggers) changes.
CREATE TRIGGER usage_counts_added AFTER INSERT ON job_counts
BEGIN
    UPDATE tenant_usage
    SET active = active + NEW.queued + NEW.processing,
        bytes = bytes + NEW.output_bytes
    WHERE tenant = (SELECT tenant FROM jobs WHERE id = NEW.job_id AND deleted = 0);
END;

-- (A start moves an image from queued to processing: nothing to count.)
CREATE TRIGGER usage_counts_changed AFTER UPDATE ON job_counts
WHEN NEW.queued + NEW.processing != OLD.queued + OLD.processing
  OR NEW.output_bytes != OLD.output_bytes
BEGIN
    UPDATE tenant_usage
    SET active = active + (NEW.queued + NEW.processing) - (OLD.queued + OLD.processing),
        bytes = bytes + NEW.output_bytes - OLD.output_bytes
    WHERE tenant = (SELECT tenant FROM jobs WHERE id = NEW.job_id AND deleted = 0);
END;

-- A job marked deleted, or removed (by the purge) without having been
-- marked: what it counted goes.
CREATE TRIGGER usage_job_deleted AFTER UPDATE OF deleted ON jobs
WHEN NEW.deleted = 1 AND OLD.deleted = 0
BEGIN
    UPDATE tenant_usage
    SET active = active - COALESCE((SELECT queued + processing FROM job_counts
                                    WHERE job_id = NEW.id), 0),
        bytes = bytes - NEW.input_bytes - COALESCE((SELECT output_bytes FROM job_counts
                                                    WHERE job_id = NEW.id), 0)
    WHERE tenant = NEW.tenant;
END;

CREATE TRIGGER usage_job_removed AFTER DELETE ON jobs
WHEN OLD.deleted = 0
BEGIN
    UPDATE tenant_usage
    SET active = active - COALESCE((SELECT queued + processing FROM job_counts
                                    WHERE job_id = OLD.id), 0),
        bytes = bytes - OLD.input_bytes - COALESCE((SELECT output_bytes FROM job_counts
                                                    WHERE job_id = OLD.id), 0)
    WHERE tenant = OLD.tenant;
END;
