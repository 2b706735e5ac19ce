-- Conversations: replies and threads, reactions, pins, mentions, and reports of posts.
--
-- events: reply_to (the post a reply answers), thread_root (the first post of its thread:
-- threads are flat, a reply to a reply joins the same thread), emoji (react and unreact
-- events), mentions (a JSON array of the user ids a post or edit mentions, resolved by the
-- server when it is sequenced; NULL: nobody) and pinned (the post's current state).
-- reactions, mentions and thread_summaries hold the current state the events built, written
-- in the group commit that appends them; reports are not events.

ALTER TABLE events ADD COLUMN reply_to INTEGER;
ALTER TABLE events ADD COLUMN thread_root INTEGER;
ALTER TABLE events ADD COLUMN emoji TEXT;
ALTER TABLE events ADD COLUMN mentions TEXT;
ALTER TABLE events ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;

-- History pages show posts, member and sphere events: reactions and pins, like edits and
-- deletes, show only in the state of their post. Queries must repeat this WHERE.
DROP INDEX events_history;
CREATE INDEX events_history ON events (sphere_id, stream_offset)
    WHERE kind NOT IN ('edit', 'delete', 'react', 'unreact', 'pin', 'unpin');

-- get_thread: a thread's replies in offset order.
CREATE INDEX events_threads ON events (sphere_id, thread_root, stream_offset)
    WHERE thread_root IS NOT NULL;

-- list_pins: the pinned posts of a sphere.
CREATE INDEX events_pins ON events (sphere_id, stream_offset) WHERE pinned <> 0;

-- One row per (post, emoji, user); stream_offset is the react event's, so the users who
-- reacted first are listed first.
CREATE TABLE reactions (
    sphere_id     TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    target        INTEGER NOT NULL,
    emoji         TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    stream_offset INTEGER NOT NULL,
    PRIMARY KEY (sphere_id, target, emoji, user_id)
) WITHOUT ROWID;

-- One row per (post, user mentioned); ts_ms is the post's, for the newest-first listing.
CREATE TABLE mentions (
    sphere_id     TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    stream_offset INTEGER NOT NULL,
    user_id       TEXT NOT NULL,
    ts_ms         INTEGER NOT NULL,
    PRIMARY KEY (sphere_id, stream_offset, user_id)
) WITHOUT ROWID;

-- list_mentions pages a user's mentions newest first.
CREATE INDEX mentions_by_user ON mentions (user_id, ts_ms, sphere_id, stream_offset);

-- One row per post that has replies: how many, and the latest.
CREATE TABLE thread_summaries (
    sphere_id   TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    root        INTEGER NOT NULL,
    replies     INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    last_ts_ms  INTEGER NOT NULL,
    PRIMARY KEY (sphere_id, root)
) WITHOUT ROWID;

-- list_threads: the most recently answered first.
CREATE INDEX thread_summaries_by_activity ON thread_summaries (sphere_id, last_offset);

-- Reports of posts to the sphere's administrators: one per (post, reporter).
CREATE TABLE reports (
    report_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    sphere_id   TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    target      INTEGER NOT NULL,
    reporter_id TEXT NOT NULL,
    reason      TEXT NOT NULL,
    comment     TEXT,
    ts_ms       INTEGER NOT NULL
);

CREATE UNIQUE INDEX reports_once ON reports (sphere_id, target, reporter_id);

-- list_reports pages a sphere's reports newest first.
CREATE INDEX reports_by_sphere ON reports (sphere_id, report_id);
