"""Fixtures: otlp (filled in by its owner)."""
