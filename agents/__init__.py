"""Faust agents: thin loops that decode, call the pure logic in `tables/`, and route."""
