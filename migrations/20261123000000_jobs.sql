-- Jobs and per-image progress for the embedded (SQLite) metadata store.
-- Times are Unix milliseconds.

CREATE TABLE jobs (
    id          TEXT    PRIMARY KEY NOT NULL,
    -- The job as recorded at submission (JSON); never changes.
    record      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- Set by DELETE /jobs/{id}: hidden at once, purged soon after.
    deleted     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The purger's query: expired or deleted jobs.
CREATE INDEX jobs_by_expiry ON jobs (expires_at);
CREATE INDEX jobs_deleted ON jobs (deleted) WHERE deleted = 1;

CREATE TABLE images (
    job_id    TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    -- Copied out of `progress` so the fencing rules are one UPDATE.
    state     TEXT    NOT NULL,
    attempts  INTEGER NOT NULL,
    -- ImageProgress as JSON.
    progress  TEXT    NOT NULL,
    PRIMARY KEY (job_id, idx)
) STRICT, WITHOUT ROWID;
