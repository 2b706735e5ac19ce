-- The initial schema: the same tables, columns and indexes as sqlite/0001_init.sql.
--
-- Enumerated text columns (kind, privacy, role) carry no CHECK, as in SQLite: the Python enums
-- validate them, and both engines keep one logical schema.
-- org_id is reserved for organisations as the tenant boundary; nothing reads it yet.

CREATE TABLE users (
    user_id    TEXT PRIMARY KEY,
    org_id     TEXT,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    is_admin   BOOLEAN NOT NULL DEFAULT false,
    created_ms BIGINT NOT NULL
);

CREATE TABLE tokens (
    token_id    TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    secret_hash BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    revoked     BOOLEAN NOT NULL DEFAULT false
);

-- Without it, deleting a user would scan every token for the cascade.
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE spheres (
    sphere_id   TEXT PRIMARY KEY,
    org_id      TEXT,
    name        TEXT NOT NULL,
    privacy     TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    -- The sequencer: offset of the latest event, moved in the transaction that appends.
    last_offset BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    -- Creation order among spheres created in the same millisecond (SQLite's rowid does this).
    created_seq BIGINT GENERATED ALWAYS AS IDENTITY
);

-- discoverable_spheres: newest first, created_seq breaking ties.
CREATE INDEX spheres_discoverable ON spheres (created_ms, created_seq)
    WHERE privacy IN ('open', 'public');

CREATE TABLE members (
    sphere_id   TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    read_offset BIGINT NOT NULL DEFAULT 0,
    joined_ms   BIGINT NOT NULL,
    PRIMARY KEY (sphere_id, user_id)
);

-- user_spheres starts from the user.
CREATE INDEX members_by_user ON members (user_id);

-- One row per event of a sphere's stream. A post row holds the post's current state (body,
-- edited_ms, deleted); an edit row holds the body it set; a delete row holds no body.
-- author_id has no foreign key: a stale author must not fail a whole group commit, and the
-- server appends only for authenticated users.
CREATE TABLE events (
    sphere_id     TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    stream_offset BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    author_id     TEXT NOT NULL,
    ts_ms         BIGINT NOT NULL,
    body          TEXT,
    target        BIGINT,
    edited_ms     BIGINT,
    deleted       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (sphere_id, stream_offset)
);

-- The idempotency key of appends; also what stops two processes storing one draft twice.
CREATE UNIQUE INDEX events_idempotency ON events (sphere_id, author_id, message_id);

-- history pages over posts in O(limit) however many edits lie between them; author_id and
-- deleted let the unread count of user_spheres be an index-only scan.
CREATE INDEX events_by_kind ON events (sphere_id, kind, stream_offset) INCLUDE (author_id, deleted);

-- A delete erases the bodies of its post's edits.
CREATE INDEX events_edits ON events (sphere_id, target) WHERE kind = 'edit';
