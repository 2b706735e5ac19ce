-- Private messages: a direct conversation is a sphere of type 'direct' whose participants
-- (2 to 10) are all members; nobody administers it and nobody else sees it. It belongs to the
-- organisation of its context (spheres.org_id): an organisation every participant belongs to,
-- or a sphere every participant is a member of (context_sphere_id, kept after that sphere
-- is gone: the conversation is its participants').
ALTER TABLE spheres ADD COLUMN context_sphere_id TEXT;

-- Two people have one conversation per context: opening it again finds it here. user_low and
-- user_high are the two user ids in order; context_sphere_id is '' for the organisation.
-- A row goes with its conversation, its organisation, or either person's account.
CREATE TABLE direct_pairs (
    org_id            TEXT NOT NULL REFERENCES organisations (org_id) ON DELETE CASCADE,
    context_sphere_id TEXT NOT NULL,
    user_low          TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    user_high         TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    sphere_id         TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, context_sphere_id, user_low, user_high)
);

-- The cascades start from the sphere or from either user.
CREATE INDEX direct_pairs_by_sphere ON direct_pairs (sphere_id);
CREATE INDEX direct_pairs_by_low ON direct_pairs (user_low);
CREATE INDEX direct_pairs_by_high ON direct_pairs (user_high);
