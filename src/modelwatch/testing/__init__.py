"""modelwatch.testing."""
