"""modelwatch.ops."""
