"""Capture: decorators, context managers and stream wrappers that emit GenAI telemetry.

Uses only the OpenTelemetry API, wrapt and structlog.
"""
