"""Resilience: the failover router, the breaker guard around pybreaker, retries, ``circuit()``.

The public names are re-exported at the top level (``modelwatch.Router`` ...); the extension
points (orderings, classifier protocol, clocks, Redis storage) live here.
"""

from modelwatch._clock import Clock, ManualClock, SystemClock
from modelwatch.resilience._kinds import Classifier
from modelwatch.resilience._shared import redis_storage
from modelwatch.resilience.backend import Backend, BackendStatus
from modelwatch.resilience.breaker import Breaker, Permit, Transition
from modelwatch.resilience.canary import Canary, CanaryStatus
from modelwatch.resilience.circuit import circuit, get_breaker
from modelwatch.resilience.deadline import AttemptTimeoutError, WorkerPool
from modelwatch.resilience.hedge import Hedge
from modelwatch.resilience.ordering import Candidate, LeastLatency, Ordering, Priority, Weighted
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.router import Router
from modelwatch.resilience.warmup import WarmupResult

__all__ = [
    "AttemptTimeoutError",
    "Backend",
    "BackendStatus",
    "Breaker",
    "BreakerPolicy",
    "Canary",
    "CanaryStatus",
    "Candidate",
    "Classifier",
    "Clock",
    "Hedge",
    "LeastLatency",
    "ManualClock",
    "Ordering",
    "Permit",
    "Priority",
    "RetryPolicy",
    "Router",
    "SystemClock",
    "Transition",
    "WarmupResult",
    "Weighted",
    "WorkerPool",
    "circuit",
    "get_breaker",
    "redis_storage",
]
