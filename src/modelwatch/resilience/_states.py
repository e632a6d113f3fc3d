"""The breaker's states, transition reasons and the permit a call holds (shared by the guard,
the router and ``circuit()``)."""

from __future__ import annotations

import itertools
from typing import Final, Literal

from modelwatch import semconv

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "STATE_VALUE", "Permit", "State"]

State = Literal["closed", "half_open", "open"]
CLOSED: Final = "closed"
HALF_OPEN: Final = "half_open"
OPEN: Final = "open"

STATE_VALUE: Final[dict[str, int]] = {
    CLOSED: semconv.CIRCUIT_CLOSED,
    HALF_OPEN: semconv.CIRCUIT_HALF_OPEN,
    OPEN: semconv.CIRCUIT_OPEN,
}

# transition reasons (the ``reason`` attribute of modelwatch.circuit.transitions)
REASON_CONSECUTIVE: Final = "consecutive_failures"
REASON_RATIO: Final = "failure_ratio"
REASON_SLOW: Final = "slow_calls"
REASON_OPEN_ELAPSED: Final = "open_elapsed"
REASON_TRIAL_FAILED: Final = "trial_failed"
REASON_RECOVERED: Final = "recovered"
REASON_PROBE: Final = "probe"
REASON_SHARED: Final = "shared_state"
REASON_MANUAL: Final = "manual"

_permit_ids = itertools.count(1)


class Permit:
    """Admission to make one call; report its outcome to the breaker exactly once."""

    __slots__ = ("generation", "id", "lease_until", "settled", "trial")

    def __init__(self, generation: int, trial: bool = False, lease_until: float = 0.0) -> None:
        self.generation = generation
        self.trial = trial
        self.lease_until = lease_until
        self.id = next(_permit_ids) if trial else 0
        self.settled = False
