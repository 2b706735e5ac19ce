"""Sphere governance: the handlers of the requests that govern a sphere, one module per kind
of act (``audit``: the sphere's audit log; ``charter``: its charter; ``reports``: reports of
posts). The rights they need are rows of the operation table; the rules on particular objects
are theirs."""
