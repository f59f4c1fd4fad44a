-- The quotas read a tenant's usage on every submission (src/meta/sqlite_pace.rs):
-- images queued or running, and bytes stored. Both are now kept per job,
-- so that read sums one small row per live job instead of parsing every
-- live image's progress: images queued or running are already in
-- `job_counts`; each job's result bytes join them here, kept by the trigger
-- below as results are written (and given back when an operator reopens an
-- image). Uploads stay in `jobs.input_bytes`. The index below covers the
-- read's look at the jobs, which then never reads a job's row (and its
-- record) at all; it replaces the plain one by tenant, which only this read
-- used.
DROP INDEX jobs_by_tenant;
CREATE INDEX jobs_usage ON jobs (tenant, expires_at, input_bytes, id) WHERE deleted = 0;

ALTER TABLE job_counts ADD COLUMN output_bytes INTEGER NOT NULL DEFAULT 0;

UPDATE job_counts SET output_bytes = (
    SELECT COALESCE(SUM(json_extract(progress, '$.output_bytes')), 0)
    FROM images WHERE images.job_id = job_counts.job_id);

CREATE TRIGGER image_output AFTER UPDATE OF progress ON images
WHEN json_extract(NEW.progress, '$.output_bytes') IS NOT json_extract(OLD.progress, '$.output_bytes')
BEGIN
    UPDATE job_counts
    SET output_bytes = output_bytes
                       - COALESCE(json_extract(OLD.progress, '$.output_bytes'), 0)
                       + COALESCE(json_extract(NEW.progress, '$.output_bytes'), 0)
    WHERE job_id = NEW.job_id;
END;

-- Fair scheduling's release reads the task ids of a job's next images
-- (src/meta/sqlite_pace.rs). They were read out of the job's record, which
-- meant parsing the whole record (every image's entry) for every release:
-- for a job of n images released a few at a time, work growing as n².
-- Each image's row now carries its own, written with it.
ALTER TABLE images ADD COLUMN task_id TEXT;

UPDATE images SET task_id = (
    SELECT json_extract(jobs.record, '$.images[' || images.idx || '].task_id')
    FROM jobs WHERE jobs.id = images.job_id);
