"""Privacy: retention, export and erasure jobs (resumable, batched, supervised)."""
