"""Operational and benchmark scripts; each prints figures and is bounded in count and time."""
