-- Sessions: the same tables, columns and indexes as sqlite/0003_sessions.sql.
--
-- Existing tokens become 'session' tokens, or 'api' tokens for bots; they keep their expiry.
-- Their issuer was not recorded before this migration: issued_by stays NULL ("unknown").

ALTER TABLE users ADD COLUMN disabled_ms BIGINT;

ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'session';
ALTER TABLE tokens ADD COLUMN issued_by TEXT;
ALTER TABLE tokens ADD COLUMN label TEXT;
ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT;

UPDATE tokens SET kind = 'api' WHERE user_id IN (SELECT user_id FROM users WHERE kind = 'bot');

CREATE INDEX tokens_by_user_created ON tokens (user_id, created_ms, token_id);

-- Writers take an advisory lock before inserting (storage/sessions_sql.py), so seq order is
-- commit order and a reader that saw seq N has seen every row below it.
CREATE TABLE session_changes (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    token_id TEXT,
    ts_ms    BIGINT NOT NULL
);

CREATE TABLE audit_log (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    user_id  TEXT,
    token_id TEXT,
    detail   TEXT
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
