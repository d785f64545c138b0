"""Sinks: PostgreSQL, Prometheus (and later Redis and Alertmanager)."""
