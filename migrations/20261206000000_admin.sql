-- The operator's view (src/meta/admin.rs): images settled per minute, and
-- the latest failures with their reasons, kept by a trigger as images
-- settle (cheap: one upsert, and one insert per failure), so the admin page
-- reads them without scanning every job's images.
CREATE TABLE settled_per_minute (
    minute     INTEGER PRIMARY KEY NOT NULL,  -- Unix ms / 60000
    succeeded  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE recent_failures (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT    NOT NULL,
    idx     INTEGER NOT NULL,
    error   TEXT    NOT NULL,
    at      TEXT    NOT NULL
) STRICT;

CREATE TRIGGER image_settled AFTER UPDATE OF state ON images
WHEN NEW.state IN ('succeeded', 'failed') AND OLD.state != NEW.state
BEGIN
    INSERT INTO settled_per_minute (minute, succeeded, failed)
    VALUES (CAST((julianday('now') - 2440587.5) * 1440 AS INTEGER),
            NEW.state = 'succeeded', NEW.state = 'failed')
    ON CONFLICT (minute) DO UPDATE SET succeeded = succeeded + excluded.succeeded,
                                       failed = failed + excluded.failed;
    DELETE FROM settled_per_minute
    WHERE minute < CAST((julianday('now') - 2440587.5) * 1440 AS INTEGER) - 1440;
    INSERT INTO recent_failures (job_id, idx, error, at)
    SELECT NEW.job_id, NEW.idx, COALESCE(json_extract(NEW.progress, '$.error'), 'failed'),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE NEW.state = 'failed';
    DELETE FROM recent_failures
    WHERE NEW.state = 'failed' AND id <= (SELECT MAX(id) FROM recent_failures) - 500;
END;

-- The admin page's latest jobs.
CREATE INDEX jobs_by_creation ON jobs (created_at);
