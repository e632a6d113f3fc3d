"""modelwatch: see, and survive, what your models do.

The public surface is declared here once; everything else is internal.
"""

import modelwatch.integrations  # noqa: F401 - makes modelwatch.huggingface/openai/celery importable
from modelwatch import lifecycle
from modelwatch._classify import classify
from modelwatch._config import Config, configure, flush, shutdown
from modelwatch._version import __version__
from modelwatch.capture._record import CallRecord
from modelwatch.capture.agent import agent_step
from modelwatch.capture.budget import Budget
from modelwatch.capture.call import Call, CallSpec, current_call
from modelwatch.capture.context import context_executor, propagate
from modelwatch.capture.drift import Drift
from modelwatch.capture.monitored import monitored
from modelwatch.capture.quality import record_outcome, record_quality
from modelwatch.errors import (
    AllBackendsFailedError,
    Attempt,
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    ModelwatchError,
    StreamInterruptedError,
)
from modelwatch.health import Health, HealthReport
from modelwatch.resilience import (
    Backend,
    BackendStatus,
    BreakerPolicy,
    Canary,
    Hedge,
    RetryPolicy,
    Router,
    WarmupResult,
    circuit,
)

__all__ = [
    "AllBackendsFailedError",
    "Attempt",
    "Backend",
    "BackendStatus",
    "BreakerPolicy",
    "Budget",
    "BudgetExceededError",
    "Call",
    "CallRecord",
    "CallSpec",
    "Canary",
    "CircuitOpenError",
    "Config",
    "ConfigurationError",
    "Drift",
    "Health",
    "HealthReport",
    "Hedge",
    "ModelwatchError",
    "RetryPolicy",
    "Router",
    "StreamInterruptedError",
    "WarmupResult",
    "__version__",
    "agent_step",
    "circuit",
    "classify",
    "configure",
    "context_executor",
    "current_call",
    "flush",
    "lifecycle",
    "monitored",
    "propagate",
    "record_outcome",
    "record_quality",
    "shutdown",
]
