"""modelwatch.integrations."""
