"""Privacy: what the server does with people's data for them (exports, erasure, retention)."""
