"""The resilience layer's clock: :mod:`modelwatch._clock`, shared with the health registry."""

from modelwatch._clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]
