-- The per-sphere audit log: every governance act (settings, type, history, roles, invitations,
-- requests, removals, bans, mutes, moderators' deletions, charters, reports), written in the
-- transaction of the act. Who, what, to whom, when; never a message body.
--
-- Append-only: no row changes, and a row goes only with its sphere (deleting a sphere deletes
-- all its data; the server's audit_log keeps that it was deleted). No foreign key: the rows
-- are deleted by delete_sphere, after the sphere, which the trigger checks.
CREATE TABLE sphere_audit (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    sphere_id     TEXT NOT NULL,
    ts_ms         INTEGER NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    target_id     TEXT,
    stream_offset INTEGER,
    detail        TEXT
);

-- list_sphere_audit pages one sphere's entries newest first.
CREATE INDEX sphere_audit_by_sphere ON sphere_audit (sphere_id, seq);

CREATE TRIGGER sphere_audit_no_update BEFORE UPDATE ON sphere_audit
BEGIN SELECT RAISE(ABORT, 'sphere_audit is append-only'); END;

CREATE TRIGGER sphere_audit_no_delete BEFORE DELETE ON sphere_audit
WHEN EXISTS (SELECT 1 FROM spheres WHERE sphere_id = OLD.sphere_id)
BEGIN SELECT RAISE(ABORT, 'sphere_audit is append-only'); END;
