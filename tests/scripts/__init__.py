"""Smoke tests of the load generator, the baseline relay and the codec benchmark."""
