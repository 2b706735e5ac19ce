-- A mute outlives the membership it was made in: a member who leaves (or is removed, or banned)
-- while muted is muted again for the rest of it if they enter the sphere again, so leaving and
-- joining an open sphere does not shed a mute. Rows go with their sphere.
CREATE TABLE departed_mutes (
    sphere_id TEXT NOT NULL REFERENCES spheres (sphere_id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    until_ms  BIGINT NOT NULL,
    PRIMARY KEY (sphere_id, user_id)
);
