-- Sphere settings and what each member's view of a sphere depends on.
--
-- spheres: listed (shown to users who may see it), join_policy (free, approval, invitation),
-- history_mode (since_joining or full: what a newcomer may read), the charter (text and
-- version; 0: none), and public_from: the first offset an outsider may read of a public sphere
-- (a sphere made public keeps from outsiders what its history promise kept from newcomers).
-- members: history_from (the first offset the member may read), charter_accepted (the charter
-- version they accepted), muted_until_ms (they may not write before then).
--
-- Spheres created before this migration showed their whole history to newcomers: they keep
-- that promise (history_mode 'full'); their open and public spheres stay listed and free to
-- join, as they were.

ALTER TABLE spheres ADD COLUMN listed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spheres ADD COLUMN join_policy TEXT NOT NULL DEFAULT 'invitation';
ALTER TABLE spheres ADD COLUMN history_mode TEXT NOT NULL DEFAULT 'full';
ALTER TABLE spheres ADD COLUMN charter_text TEXT;
ALTER TABLE spheres ADD COLUMN charter_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spheres ADD COLUMN public_from BIGINT NOT NULL DEFAULT 0;

UPDATE spheres SET listed = 1, join_policy = 'free' WHERE privacy IN ('open', 'public');

ALTER TABLE members ADD COLUMN history_from BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN charter_accepted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN muted_until_ms BIGINT;

-- A sphere event carries every setting as it is afterwards (privacy has its column since 0002).
ALTER TABLE events ADD COLUMN sphere_name TEXT;
ALTER TABLE events ADD COLUMN listed INTEGER;
ALTER TABLE events ADD COLUMN join_policy TEXT;
ALTER TABLE events ADD COLUMN history_mode TEXT;
ALTER TABLE events ADD COLUMN charter_version INTEGER;
