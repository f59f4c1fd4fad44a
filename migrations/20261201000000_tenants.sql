-- API keys and idempotency records for the embedded (SQLite) metadata store.
-- Times are Unix milliseconds.

CREATE TABLE api_keys (
    id      TEXT PRIMARY KEY NOT NULL,
    -- Hex SHA-256 of the token; the token itself is never stored.
    hash    TEXT NOT NULL UNIQUE,
    -- The key as JSON (tenant, scopes, label, created_at, revoked_at).
    record  TEXT NOT NULL
) STRICT;

-- One row per (tenant, Idempotency-Key): pending while `completed` is NULL.
CREATE TABLE submissions (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    -- The random nonce of the request holding the claim: only it may
    -- complete or release it.
    claim       TEXT    NOT NULL,
    -- The first answer as JSON, once the request succeeded.
    completed   TEXT,
    job_id      TEXT,
    -- A pending claim's lease, or the job's expiry once completed.
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) STRICT, WITHOUT ROWID;

-- Submissions per tenant (or client address) per fixed window, for quotas.
CREATE TABLE quota_windows (
    subject  TEXT    NOT NULL,
    -- The window's start, Unix milliseconds.
    window   INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (subject, window)
) STRICT, WITHOUT ROWID;
