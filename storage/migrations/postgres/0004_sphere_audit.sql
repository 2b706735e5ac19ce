-- The per-sphere audit log: every governance act (settings, type, history, roles, invitations,
-- requests, removals, bans, mutes, moderators' deletions, charters, reports), written in the
-- transaction of the act. Who, what, to whom, when; never a message body.
--
-- Append-only: no row changes, and a row goes only with its sphere (deleting a sphere deletes
-- all its data; the server's audit_log keeps that it was deleted). No foreign key: the rows
-- are deleted by delete_sphere, after the sphere, which the trigger checks.
CREATE TABLE sphere_audit (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sphere_id     TEXT NOT NULL,
    ts_ms         BIGINT NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    target_id     TEXT,
    stream_offset BIGINT,
    detail        TEXT
);

-- list_sphere_audit pages one sphere's entries newest first.
CREATE INDEX sphere_audit_by_sphere ON sphere_audit (sphere_id, seq);

CREATE FUNCTION sphere_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM spheres WHERE sphere_id = OLD.sphere_id)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'sphere_audit is append-only';
END $$;

CREATE TRIGGER sphere_audit_append_only BEFORE UPDATE OR DELETE ON sphere_audit
    FOR EACH ROW EXECUTE FUNCTION sphere_audit_append_only();
