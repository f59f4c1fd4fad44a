-- Webhooks (src/jobs/webhook.rs, src/meta/deliveries.rs).
--
-- A job's webhook, as `create` records it: `events` is the wanted event
-- names as `,name,name,`, so the trigger below matches with one instr().
CREATE TABLE job_webhooks (
    job_id  TEXT    PRIMARY KEY NOT NULL,
    url     TEXT    NOT NULL,
    events  TEXT    NOT NULL,
    tenant  TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

-- One delivery per event the job's webhook wants, made by the trigger in
-- the statement that writes the event: no crash can separate the two. It
-- carries what it needs to be sent after its job is purged. Times in Unix
-- ms; `next_at` is when a pending delivery is next tried, or when the lease
-- of the try or the queue task in flight runs out.
CREATE TABLE webhook_deliveries (
    job_id       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    made_at      INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    body         TEXT,
    PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';

CREATE TRIGGER webhook_scheduled AFTER INSERT ON job_events
BEGIN
    INSERT INTO webhook_deliveries (job_id, seq, type, url, tenant, event, made_at, next_at)
    SELECT NEW.job_id, NEW.seq, NEW.type, w.url, w.tenant, NEW.data,
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM job_webhooks w
    WHERE w.job_id = NEW.job_id AND instr(w.events, ',' || NEW.type || ',') > 0;
END;
