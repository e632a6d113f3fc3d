"""Shared fixtures. Each area's fixtures live in tests/support/<area>.py and load here."""

pytest_plugins = [
    "support.servers",
    "support.otlp",
    "support.fake_model",
]
