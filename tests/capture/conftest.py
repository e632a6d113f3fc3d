"""Fixtures for the capture tests."""

from support.redis_outage import watched  # noqa: F401 (a fixture: Redis clients recording their threads)
