"""Runnable example bots: ``python -m clients.examples.echo_bot --url URL --token TOKEN``."""
