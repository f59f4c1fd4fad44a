-- Each job's events (src/jobs/events.rs), numbered from 1 per job (`seq`),
-- written by the triggers below in the same statement as the state change
-- they describe: a progress write that is refused (fencing) makes none, and
-- a crash cannot separate the two. `id` orders every job's events together:
-- the event stream's poll reads "what is new since id N" in one query.
-- `data` is the event as JSON without its seq; a final event is a fact
-- ("job.completed"), the status it carries is rendered when it is sent.
CREATE TABLE job_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    UNIQUE (job_id, seq)
) STRICT;

-- Each job's images per state, kept by the triggers below, so that an
-- event's progress costs one small row, not a count over the job's images
-- (nor a rewrite of the job's row, whose record may be large).
CREATE TABLE job_counts (
    job_id      TEXT    PRIMARY KEY NOT NULL,
    queued      INTEGER NOT NULL,
    processing  INTEGER NOT NULL DEFAULT 0,
    succeeded   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
INSERT INTO job_counts (job_id, queued, processing, succeeded, failed)
SELECT job_id, SUM(state = 'queued'), SUM(state = 'processing'),
       SUM(state = 'succeeded'), SUM(state = 'failed')
FROM images GROUP BY job_id;

CREATE TRIGGER image_counted AFTER INSERT ON images
BEGIN
    INSERT INTO job_counts (job_id, queued) VALUES (NEW.job_id, 1)
    ON CONFLICT (job_id) DO UPDATE SET queued = queued + 1;
END;

-- Every accepted write of an image's progress: the counts, the image's
-- event, the job's progress after it, and, if this was the last image to
-- settle, the job's final event (once: a final event is never followed by
-- another).
CREATE TRIGGER image_events AFTER UPDATE ON images
BEGIN
    UPDATE job_counts SET
        queued = queued - (OLD.state = 'queued') + (NEW.state = 'queued'),
        processing = processing - (OLD.state = 'processing') + (NEW.state = 'processing'),
        succeeded = succeeded - (OLD.state = 'succeeded') + (NEW.state = 'succeeded'),
        failed = failed - (OLD.state = 'failed') + (NEW.state = 'failed')
    WHERE job_id = NEW.job_id;

    INSERT INTO job_events (job_id, seq, type, data)
    SELECT NEW.job_id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = NEW.job_id),
           kind,
           json_object('type', kind,
                       'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                       'index', NEW.idx,
                       'attempt', NEW.attempts,
                       'error', CASE WHEN kind IN ('image.failed', 'image.retrying')
                                     THEN json_extract(NEW.progress, '$.error') END)
    FROM (SELECT CASE NEW.state WHEN 'processing' THEN 'image.started'
                                WHEN 'succeeded' THEN 'image.succeeded'
                                WHEN 'failed' THEN 'image.failed'
                                ELSE 'image.retrying' END AS kind);

    INSERT INTO job_events (job_id, seq, type, data)
    SELECT NEW.job_id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = NEW.job_id),
           'job.progress',
           json_object('type', 'job.progress',
                       'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                       'progress', json_object('total', t, 'queued', queued,
                                               'processing', processing,
                                               'succeeded', succeeded, 'failed', failed,
                                               -- tenths, rounded half up, as status.rs does
                                               'percent', ((succeeded + failed) * 2000 + t) / (2 * t) / 10.0))
    FROM (SELECT queued + processing + succeeded + failed AS t, queued, processing,
                 succeeded, failed
          FROM job_counts WHERE job_id = NEW.job_id);

    INSERT INTO job_events (job_id, seq, type, data)
    SELECT NEW.job_id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = NEW.job_id),
           kind,
           json_object('type', kind, 'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    FROM (SELECT CASE WHEN failed = 0 THEN 'job.completed'
                      WHEN succeeded = 0 THEN 'job.failed'
                      ELSE 'job.completed_with_errors' END AS kind,
                 queued + processing AS unsettled
          FROM job_counts WHERE job_id = NEW.job_id)
    WHERE unsettled = 0
      AND NOT EXISTS (SELECT 1 FROM job_events
                      WHERE job_id = NEW.job_id
                        AND type IN ('job.completed', 'job.completed_with_errors',
                                     'job.failed', 'job.deleted'));
END;

-- DELETE /jobs/{id}: the final event of a job that had none yet.
CREATE TRIGGER job_deleted_event AFTER UPDATE OF deleted ON jobs
WHEN NEW.deleted = 1 AND OLD.deleted = 0
BEGIN
    INSERT INTO job_events (job_id, seq, type, data)
    SELECT NEW.id,
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = NEW.id),
           'job.deleted',
           json_object('type', 'job.deleted', 'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    WHERE NOT EXISTS (SELECT 1 FROM job_events
                      WHERE job_id = NEW.id
                        AND type IN ('job.completed', 'job.completed_with_errors',
                                     'job.failed', 'job.deleted'));
END;

-- Purged jobs, whose events stay a minute more: a watcher of a job deleted
-- mid-stream still reads its `job.deleted` (see SqliteMeta::remove).
CREATE TABLE removed_jobs (
    job_id  TEXT    PRIMARY KEY NOT NULL,
    at      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX removed_jobs_by_time ON removed_jobs (at);
