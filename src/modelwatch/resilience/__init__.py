"""modelwatch.resilience."""
