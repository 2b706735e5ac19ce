-- Membership in the stream: member and sphere events, and history pages that include them.
--
-- A member event (kind 'member') records that member_id, named member_name at the time, has
-- member_role afterwards (NULL: no longer a member) because of member_action; a sphere event
-- (kind 'sphere') records the sphere's new privacy. Posts, edits and deletes leave these NULL.

ALTER TABLE events ADD COLUMN member_id TEXT;
ALTER TABLE events ADD COLUMN member_name TEXT;
ALTER TABLE events ADD COLUMN member_role TEXT;
ALTER TABLE events ADD COLUMN member_action TEXT;
ALTER TABLE events ADD COLUMN privacy TEXT;

-- history pages over posts, member and sphere events in O(limit), however many edits and
-- deletes lie between them. Queries must repeat this WHERE for the planner to use it.
CREATE INDEX events_history ON events (sphere_id, stream_offset)
    WHERE kind NOT IN ('edit', 'delete');
