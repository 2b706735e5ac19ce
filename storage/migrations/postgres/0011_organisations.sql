-- Organisations: the tenant boundary. Every sphere belongs to one organisation (spheres.org_id,
-- reserved since the first schema); a user belongs to any number of them (org_members), as a
-- manager or a member. users.org_id was never read and goes: membership is org_members.
--
-- An install starts with one organisation, 'default', holding every existing user and sphere,
-- so a single-organisation server needs nothing more. Server administrators become its
-- managers (an organisation keeps at least one manager once it has one).

CREATE TABLE organisations (
    org_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    suspended_ms BIGINT,  -- set: its members cannot sign in to it; its data is kept
    -- The policies as a JSON object (storage.organisations.OrgPolicies); a key left out has
    -- its default, so a policy added later needs no migration.
    policies     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE org_members (
    org_id    TEXT NOT NULL REFERENCES organisations (org_id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role      TEXT NOT NULL,  -- manager | member (storage.organisations.OrgRole)
    joined_ms BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

-- user_orgs starts from the user.
CREATE INDEX org_members_by_user ON org_members (user_id);

-- The organisation's audit log: membership, roles, policies, lifecycle. Who, what, to whom,
-- when; never content. Append-only; its rows go only with their organisation.
CREATE TABLE org_audit (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id    TEXT NOT NULL,
    ts_ms     BIGINT NOT NULL,
    actor_id  TEXT NOT NULL,
    action    TEXT NOT NULL,
    target_id TEXT,
    detail    TEXT
);

CREATE INDEX org_audit_by_org ON org_audit (org_id, seq);

CREATE FUNCTION org_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM organisations WHERE org_id = OLD.org_id)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'org_audit is append-only';
END $$;

CREATE TRIGGER org_audit_append_only BEFORE UPDATE OR DELETE ON org_audit
    FOR EACH ROW EXECUTE FUNCTION org_audit_append_only();

INSERT INTO organisations (org_id, name, created_ms)
VALUES ('default', 'Default', (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);

INSERT INTO org_members (org_id, user_id, role, joined_ms)
SELECT 'default', user_id, CASE WHEN is_admin THEN 'manager' ELSE 'member' END, created_ms
FROM users;

UPDATE spheres SET org_id = 'default';

-- An organisation's spheres, newest first (listings, quotas, its export and deletion).
CREATE INDEX spheres_by_org ON spheres (org_id, created_ms);

ALTER TABLE users DROP COLUMN org_id;
