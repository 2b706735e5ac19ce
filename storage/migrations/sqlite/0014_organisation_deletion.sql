-- Organisation deletion, and suspension reaching every node.
--
-- org_deletions: one job per deleted organisation, from its request to its end. mode is what
-- the accounts it hands over to account deletion do to their posts (erase or anonymise);
-- state pending, held (only spheres under a legal hold are left) or done. member_cursor is how
-- far the look at its members went ('' before the first) and members_scanned says it reached
-- the end; spheres_deleted and accounts_handed_over count what it did. lease_owner and
-- lease_until_ms name the process running it and until when. A done row stays as the
-- tombstone that says the organisation existed (never its name): its id is not given again.
CREATE TABLE org_deletions (
    org_id               TEXT PRIMARY KEY,
    requested_ms         INTEGER NOT NULL,
    requested_by         TEXT NOT NULL,
    mode                 TEXT NOT NULL,
    state                TEXT NOT NULL,
    member_cursor        TEXT NOT NULL DEFAULT '',
    members_scanned      INTEGER NOT NULL DEFAULT 0,
    spheres_deleted      INTEGER NOT NULL DEFAULT 0,
    accounts_handed_over INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_until_ms       INTEGER,
    done_ms              INTEGER
);

-- Jobs to resume at start-up: the unfinished ones, oldest first.
CREATE INDEX org_deletions_open ON org_deletions (requested_ms, org_id) WHERE state <> 'done';

-- An org_suspended change names the organisation: every node ends its live subscriptions to
-- the organisation's spheres, and the sessions of the member the row names, if any.
ALTER TABLE session_changes ADD COLUMN org_id TEXT;
