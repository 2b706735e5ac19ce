-- Organisation governance: the directory of members, searchable by a name prefix and paged by
-- name at any size (400,000 members), and the portal of an organisation's spheres by name.
--
-- org_members.name_key is the member's name in lower case, kept by triggers from users.name
-- (whoever inserts the membership, and whenever the user is renamed), so that the directory
-- is one index range per page: (org_id, name_key, user_id). lower() here folds ASCII letters;
-- queries fold their prefix with the same lower(), so a prefix always meets its names.

ALTER TABLE org_members ADD COLUMN name_key TEXT NOT NULL DEFAULT '';

UPDATE org_members
SET name_key = (SELECT lower(u.name) FROM users AS u WHERE u.user_id = org_members.user_id);

CREATE INDEX org_members_by_name ON org_members (org_id, name_key, user_id);

-- Managers first: the last-manager rule counts them.
CREATE INDEX org_members_by_role ON org_members (org_id, role);

CREATE TRIGGER org_members_name_key AFTER INSERT ON org_members
BEGIN
    UPDATE org_members
    SET name_key = (SELECT lower(u.name) FROM users AS u WHERE u.user_id = NEW.user_id)
    WHERE org_id = NEW.org_id AND user_id = NEW.user_id;
END;

CREATE TRIGGER users_name_key AFTER UPDATE OF name ON users
BEGIN
    UPDATE org_members SET name_key = lower(NEW.name) WHERE user_id = NEW.user_id;
END;

-- The portal lists an organisation's spheres by name.
CREATE INDEX spheres_by_org_name ON spheres (org_id, name, sphere_id);

-- The organisation every install starts with keeps what a single-organisation server always
-- allowed: any member creates spheres of any type there was before organisations.
UPDATE organisations
SET policies = '{"member_sphere_types": ["open", "private", "public", "restricted"]}'
WHERE org_id = 'default' AND policies = '{}';
