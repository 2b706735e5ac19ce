-- Organisation quotas: what the write path counts against quotas.messages_per_day and
-- quotas.storage_bytes (storage.usage). One row per organisation and UTC day (days since
-- 1970-01-01), kept only for organisations with such a quota, changed by the group commit that
-- appends the posts it counts. Counts only, never content.
CREATE TABLE org_usage (
    org_id     TEXT NOT NULL REFERENCES organisations (org_id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    posts      INTEGER NOT NULL DEFAULT 0,  -- posts appended that day
    body_bytes INTEGER NOT NULL DEFAULT 0,  -- bytes (UTF-8) of the post and edit bodies written
    PRIMARY KEY (org_id, day)
) WITHOUT ROWID;

-- The listed spheres of an organisation, newest first: discovery lists those of the caller's
-- organisations only (rowid breaking ties in creation order).
CREATE INDEX spheres_discoverable_by_org ON spheres (org_id, created_ms)
WHERE privacy IN ('open', 'public') AND listed <> 0;
