-- Account deletion: one job per deleted account, and its progress sphere by sphere.
--
-- account_deletions: the job, from its request to its end. mode is the server's policy when it
-- was requested (erase or anonymise); state pending, held (only spheres under a legal hold are
-- left) or done. sphere_cursor is how far the scan of spheres went ('' before the first), and
-- scanned says it reached the end. rewritten counts the events the job rewrote. lease_owner
-- and lease_until_ms name the process running the job and until when (another process takes
-- it over once the lease ran out). A done row stays as a tombstone: asking again answers it,
-- and the user id is never given to anyone else.
CREATE TABLE account_deletions (
    user_id        TEXT PRIMARY KEY,
    requested_ms   INTEGER NOT NULL,
    requested_by   TEXT NOT NULL,
    mode           TEXT NOT NULL,
    state          TEXT NOT NULL,
    sphere_cursor  TEXT NOT NULL DEFAULT '',
    scanned        INTEGER NOT NULL DEFAULT 0,
    rewritten      INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until_ms INTEGER,
    done_ms        INTEGER
);

-- Jobs to resume at start-up: the unfinished ones, oldest first.
CREATE INDEX account_deletions_open ON account_deletions (requested_ms, user_id)
    WHERE state <> 'done';

-- One row per sphere in which the account left something (a membership, an event, a reaction,
-- an invitation, a request, a ban, a report), found by the scan; step membership, content or
-- done. The rows of a job go when it is done.
CREATE TABLE account_deletion_spheres (
    user_id   TEXT NOT NULL,
    sphere_id TEXT NOT NULL,
    step      TEXT NOT NULL,
    PRIMARY KEY (user_id, sphere_id)
) WITHOUT ROWID;
