"""Fixtures: fake_model (filled in by its owner)."""
