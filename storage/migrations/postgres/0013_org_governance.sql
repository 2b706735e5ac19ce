-- Organisation governance: the directory of members, searchable by a name prefix and paged by
-- name at any size (400,000 members), and the portal of an organisation's spheres by name.
--
-- org_members.name_key is the member's name in lower case, kept by triggers from users.name
-- (whoever inserts the membership, and whenever the user is renamed), so that the directory
-- is one index range per page: (org_id, name_key, user_id), in code-point order (COLLATE "C")
-- whatever the database's locale. Queries fold their prefix with the same lower().

ALTER TABLE org_members ADD COLUMN name_key TEXT COLLATE "C" NOT NULL DEFAULT '';

UPDATE org_members AS m SET name_key = lower(u.name) FROM users AS u WHERE u.user_id = m.user_id;

CREATE INDEX org_members_by_name ON org_members (org_id, name_key, user_id COLLATE "C");

-- Managers first: the last-manager rule counts them.
CREATE INDEX org_members_by_role ON org_members (org_id, role);

CREATE FUNCTION org_members_name_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_key := coalesce((SELECT lower(u.name) FROM users AS u WHERE u.user_id = NEW.user_id), '');
    RETURN NEW;
END $$;

CREATE TRIGGER org_members_name_key BEFORE INSERT ON org_members
    FOR EACH ROW EXECUTE FUNCTION org_members_name_key();

CREATE FUNCTION users_name_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE org_members SET name_key = lower(NEW.name) WHERE user_id = NEW.user_id;
    RETURN NEW;
END $$;

CREATE TRIGGER users_name_key AFTER UPDATE OF name ON users
    FOR EACH ROW EXECUTE FUNCTION users_name_key();

-- The portal lists an organisation's spheres by name.
CREATE INDEX spheres_by_org_name ON spheres (org_id, name COLLATE "C", sphere_id COLLATE "C");

-- The organisation every install starts with keeps what a single-organisation server always
-- allowed: any member creates spheres of any type there was before organisations.
UPDATE organisations
SET policies = '{"member_sphere_types": ["open", "private", "public", "restricted"]}'
WHERE org_id = 'default' AND policies = '{}';
