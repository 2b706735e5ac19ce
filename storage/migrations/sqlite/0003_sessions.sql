-- Sessions: token kinds and provenance, disabled users, the session change log, the audit log.
--
-- Existing tokens become 'session' tokens, or 'api' tokens for bots; they keep their expiry.
-- Their issuer was not recorded before this migration: issued_by stays NULL ("unknown").

ALTER TABLE users ADD COLUMN disabled_ms INTEGER;

ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'session';
ALTER TABLE tokens ADD COLUMN issued_by TEXT;
ALTER TABLE tokens ADD COLUMN label TEXT;
ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER;
ALTER TABLE tokens ADD COLUMN revoked_ms INTEGER;

UPDATE tokens SET kind = 'api' WHERE user_id IN (SELECT user_id FROM users WHERE kind = 'bot');

-- list_tokens pages a user's tokens newest first.
CREATE INDEX tokens_by_user_created ON tokens (user_id, created_ms, token_id);

-- What every node polls to close live sockets: one row per revoked token or disabled user.
-- AUTOINCREMENT: a seq is never reused, even if old rows are pruned. SQLite has one writer at a
-- time, so seq order is commit order.
CREATE TABLE session_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    token_id TEXT,
    ts_ms    INTEGER NOT NULL
);

-- Administrative acts: credentials issued by someone other than their user, revocations by
-- administrators, disabled and enabled users. Append-only: the triggers refuse any change.
CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms    INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    user_id  TEXT,
    token_id TEXT,
    detail   TEXT
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
