"""modelwatch.health."""
