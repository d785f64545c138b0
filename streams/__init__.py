"""Pulse: the Faust app, topics, event envelope, tracking plans, producers and CLI."""
