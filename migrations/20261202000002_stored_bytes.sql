-- The bytes-stored quota: each job's uploads, in bytes (its results are in
-- its images' progress). Jobs recorded before this count 0.
ALTER TABLE jobs ADD COLUMN input_bytes INTEGER NOT NULL DEFAULT 0;
