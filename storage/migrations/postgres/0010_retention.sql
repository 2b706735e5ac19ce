-- Retention and legal hold.
--
-- spheres: retention_days (the sphere's own period, shorter than the server's if the server
-- sets one; NULL: the server's --retention-days), retained_from (the horizon: the first offset
-- the stream still holds; 0 while retention removed nothing), retention_run_ms (when the
-- retention job last looked at the sphere), and the legal hold: hold_since_ms (NULL: no hold),
-- hold_until_ms (NULL: until an administrator releases it), hold_reason and hold_by (the
-- administrator who set it; the reason is shown to administrators only).
-- events: a sphere event carries the retention period and the hold as they are afterwards.
-- retention_runs: one row per node that ran the job, its latest pass.

ALTER TABLE spheres ADD COLUMN retention_days INTEGER;
ALTER TABLE spheres ADD COLUMN retained_from BIGINT NOT NULL DEFAULT 0;
ALTER TABLE spheres ADD COLUMN retention_run_ms BIGINT;
ALTER TABLE spheres ADD COLUMN hold_since_ms BIGINT;
ALTER TABLE spheres ADD COLUMN hold_until_ms BIGINT;
ALTER TABLE spheres ADD COLUMN hold_reason TEXT;
ALTER TABLE spheres ADD COLUMN hold_by TEXT;

ALTER TABLE events ADD COLUMN retention_days INTEGER;
ALTER TABLE events ADD COLUMN hold_since_ms BIGINT;
ALTER TABLE events ADD COLUMN hold_until_ms BIGINT;

CREATE TABLE retention_runs (
    node        TEXT PRIMARY KEY,
    started_ms  BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL,
    spheres     INTEGER NOT NULL,
    deleted     BIGINT NOT NULL
);
