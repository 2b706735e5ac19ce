-- Entering and leaving a sphere: invitations, join requests, bans; the end of a mute in its
-- member event.
--
-- invitations: one row per invitation made (its id is the secret the invitee accepts with);
-- state pending, accepted, declined or revoked (an expired one stays pending past expires_ms).
-- At most one pending invitation per (sphere, invitee): a new one revokes the old.
-- join_requests: one row per (sphere, user), its state the latest request's (pending,
-- accepted, refused, withdrawn). bans: one row per banned user of a sphere.
-- Every row goes with its sphere (delete_sphere deletes them, the foreign keys cascade too).

CREATE TABLE invitations (
    invitation_id TEXT PRIMARY KEY,
    sphere_id     TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    inviter_id    TEXT NOT NULL,
    invitee_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    state         TEXT NOT NULL
);

CREATE UNIQUE INDEX invitations_pending ON invitations (sphere_id, invitee_id)
    WHERE state = 'pending';
-- list_invitations: a user's pending invitations, and a sphere's, oldest first.
CREATE INDEX invitations_by_invitee ON invitations (invitee_id, created_ms, invitation_id)
    WHERE state = 'pending';
CREATE INDEX invitations_by_sphere ON invitations (sphere_id, created_ms, invitation_id);

CREATE TABLE join_requests (
    sphere_id  TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    comment    TEXT,
    created_ms INTEGER NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (sphere_id, user_id)
) WITHOUT ROWID;

CREATE INDEX join_requests_pending ON join_requests (sphere_id, created_ms, user_id)
    WHERE state = 'pending';

CREATE TABLE bans (
    sphere_id TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    banned_by TEXT NOT NULL,
    ts_ms     INTEGER NOT NULL,
    reason    TEXT,
    PRIMARY KEY (sphere_id, user_id)
) WITHOUT ROWID;

-- A 'muted' member event: when the mute ends.
ALTER TABLE events ADD COLUMN until_ms INTEGER;
