"""Sphere governance: the handlers of the requests that govern a sphere, one module per kind
of act (``audit``: the sphere's audit log; ``charter``: its charter; ``reports``: reports of
posts; ``entry``: invitations and join requests; ``moderation``: bans, mutes, transfers of
ownership, deleting a sphere; ``decisions``: the rules those acts apply inside the store's
transactions). The rights they need are rows of the operation table; the rules on particular
objects are theirs."""
