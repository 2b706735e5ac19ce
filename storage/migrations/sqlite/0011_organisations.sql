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
    created_ms   INTEGER NOT NULL,
    suspended_ms INTEGER,  -- set: its members cannot sign in to it; its data is kept
    -- The policies as a JSON object (storage.organisations.OrgPolicies); a key left out has
    -- its default, so a policy added later needs no migration.
    policies     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE org_members (
    org_id    TEXT NOT NULL REFERENCES organisations (org_id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role      TEXT NOT NULL,  -- manager | member (storage.organisations.OrgRole)
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) WITHOUT ROWID;

-- user_orgs starts from the user.
CREATE INDEX org_members_by_user ON org_members (user_id);

-- The organisation's audit log: membership, roles, policies, lifecycle. Who, what, to whom,
-- when; never content. Append-only; its rows go only with their organisation.
CREATE TABLE org_audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id    TEXT NOT NULL,
    ts_ms     INTEGER NOT NULL,
    actor_id  TEXT NOT NULL,
    action    TEXT NOT NULL,
    target_id TEXT,
    detail    TEXT
);

CREATE INDEX org_audit_by_org ON org_audit (org_id, seq);

CREATE TRIGGER org_audit_no_update BEFORE UPDATE ON org_audit
BEGIN SELECT RAISE(ABORT, 'org_audit is append-only'); END;

CREATE TRIGGER org_audit_no_delete BEFORE DELETE ON org_audit
WHEN EXISTS (SELECT 1 FROM organisations WHERE org_id = OLD.org_id)
BEGIN SELECT RAISE(ABORT, 'org_audit is append-only'); END;

INSERT INTO organisations (org_id, name, created_ms)
VALUES ('default', 'Default', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

INSERT INTO org_members (org_id, user_id, role, joined_ms)
SELECT 'default', user_id, CASE WHEN is_admin <> 0 THEN 'manager' ELSE 'member' END, created_ms
FROM users;

UPDATE spheres SET org_id = 'default';

-- An organisation's spheres, newest first (listings, quotas, its export and deletion).
CREATE INDEX spheres_by_org ON spheres (org_id, created_ms);

ALTER TABLE users DROP COLUMN org_id;
