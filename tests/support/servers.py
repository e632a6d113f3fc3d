"""Fixtures: servers (filled in by its owner)."""
