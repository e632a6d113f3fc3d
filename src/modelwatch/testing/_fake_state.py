"""The mutable state of a fake model server: faults, latency, quotas and the request log.

Everything here is guarded by one lock; the HTTP handler threads and the test thread both
use it. Kept apart from the HTTP code so that the rules (which fault a request gets, when a
quota runs out) read without the socket plumbing around them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, get_args

#: Model key whose faults and latency apply to every model.
ANY_MODEL: Final = "*"

FaultName = Literal[
    "loading",
    "rate_limit",
    "server_error",
    "auth",
    "not_found",
    "bad_request",
    "hang",
    "reset",
    "slow_first_chunk",
    "cut_stream",
]
#: Every fault name :meth:`FakeModelServer.fail` accepts.
FAULTS: Final[tuple[str, ...]] = get_args(FaultName)

#: Default HTTP status and the statuses each HTTP fault may be given.
_STATUS: Final[dict[str, tuple[int, range | tuple[int, ...]]]] = {
    "loading": (503, (503,)),
    "rate_limit": (429, (429,)),
    "server_error": (500, range(500, 600)),
    "auth": (401, (401, 403)),
    "not_found": (404, (404,)),
    "bad_request": (400, (400, 409, 413, 422)),
}


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake server received.

    ``model`` is ``None`` for requests that name no model (``GET /v1/models``).
    ``status`` is the HTTP status sent, or ``None`` when none was (a reset, a hang ended by
    :meth:`FakeModelServer.stop`, a client that went away). ``fault`` names the fault that
    shaped the answer, if any (``"rate_limit"`` also when a quota ran out).
    """

    model: str | None
    method: str
    path: str
    task: str | None
    stream: bool
    status: int | None = None
    fault: str | None = None


@dataclass
class Fault:
    """An active fault (internal): what to do, with which parameters, how many more times."""

    name: str
    remaining: int | None
    status: int | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float = 1.0
    estimated_time: float = 20.0
    delay: float = 1.0
    after: int = 1


@dataclass
class Quota:
    """An advertised rate limit (internal): limits and what is left of them."""

    limit_requests: int | None
    limit_tokens: int | None
    reset_s: float
    remaining_requests: int | None = None
    remaining_tokens: int | None = None

    def __post_init__(self) -> None:
        self.remaining_requests = self.limit_requests
        self.remaining_tokens = self.limit_tokens

    @property
    def exhausted(self) -> bool:
        """Whether any resource has nothing left."""
        return any(
            left is not None and left <= 0
            for left in (self.remaining_requests, self.remaining_tokens)
        )

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` headers describing this quota, OpenAI style."""
        out: dict[str, str] = {}
        for resource, limit, left in (
            ("requests", self.limit_requests, self.remaining_requests),
            ("tokens", self.limit_tokens, self.remaining_tokens),
        ):
            if limit is not None and left is not None:
                out[f"x-ratelimit-limit-{resource}"] = str(limit)
                out[f"x-ratelimit-remaining-{resource}"] = str(max(left, 0))
                out[f"x-ratelimit-reset-{resource}"] = f"{self.reset_s:g}s"
        return out


def check_status(fault: str, status: int | None) -> int | None:
    """Validate the ``status`` given to an HTTP fault; return the status to use."""
    if fault not in _STATUS:
        if status is not None:
            raise ValueError(f"fault {fault!r} sends no HTTP status; do not pass status=")
        return None
    default, allowed = _STATUS[fault]
    if status is None:
        return default
    if status not in allowed:
        raise ValueError(f"status {status} does not fit fault {fault!r}; accepted: {list(allowed)}")
    return status


class State:
    """Faults, latency, quotas, known models and the request log, behind one lock."""

    def __init__(self, models: Iterable[str] | Mapping[str, str] | None) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.restricted = models is not None
        self.tasks: dict[str, str | None] = {}
        if isinstance(models, Mapping):
            self.tasks.update(models)
        elif models is not None:
            self.tasks.update(dict.fromkeys(models))
        self.faults: dict[str, list[Fault]] = {}
        self.latency: dict[str, float] = {}
        self.quotas: dict[str, Quota] = {}
        self.hung: dict[str, set[threading.Event]] = {}
        self.log: list[RequestRecord] = []

    def known(self, model: str) -> bool:
        """Whether ``model`` is served (any model is, unless the server was given a list)."""
        with self.lock:
            return not self.restricted or model in self.tasks

    def task_of(self, model: str) -> str | None:
        """The task registered for ``model``, if any."""
        with self.lock:
            return self.tasks.get(model)

    def models(self) -> list[str]:
        """Registered models, then models seen in requests, in first-seen order."""
        with self.lock:
            seen = dict.fromkeys(self.tasks)
            seen.update(dict.fromkeys(r.model for r in self.log if r.model is not None))
            return list(seen)

    def begin(self, record: RequestRecord) -> int:
        """Log a request as it arrives; return its index for :meth:`finish`."""
        with self.lock:
            self.log.append(record)
            return len(self.log) - 1

    def finish(self, index: int, status: int | None, fault: str | None, task: str | None) -> None:
        """Fill in how request ``index`` was answered."""
        with self.lock:
            self.log[index] = replace(self.log[index], status=status, fault=fault, task=task)

    def take_fault(self, model: str | None) -> Fault | None:
        """The fault the next request of ``model`` gets, counting it against ``times``."""
        with self.lock:
            for key in (model, ANY_MODEL):
                queue = self.faults.get(key) if key is not None else None
                if not queue:
                    continue
                fault = queue[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.pop(0)
                return fault
            return None

    def latency_of(self, model: str | None) -> float:
        """Added latency for ``model`` (its own, else the server-wide one)."""
        with self.lock:
            if model is not None and model in self.latency:
                return self.latency[model]
            return self.latency.get(ANY_MODEL, 0.0)

    def admit(self, model: str | None) -> tuple[bool, Quota | None]:
        """Count a request against ``model``'s quota: (admitted, a snapshot of the quota)."""
        with self.lock:
            quota = self.quotas.get(model) if model is not None else None
            if quota is None:
                return True, None
            if quota.exhausted:
                return False, copy.copy(quota)
            if quota.remaining_requests is not None:
                quota.remaining_requests -= 1
            return True, copy.copy(quota)

    def spend_tokens(self, model: str | None, tokens: int) -> None:
        """Charge ``tokens`` to ``model``'s token quota."""
        with self.lock:
            quota = self.quotas.get(model) if model is not None else None
            if quota is not None and quota.remaining_tokens is not None:
                quota.remaining_tokens -= tokens

    def hang_started(self, model: str | None) -> threading.Event:
        """Register a hung request; the event is set when it may go on (heal or stop)."""
        event = threading.Event()
        with self.lock:
            self.hung.setdefault(model or ANY_MODEL, set()).add(event)
            if self.stopping.is_set():
                event.set()
        return event

    def hang_ended(self, model: str | None, event: threading.Event) -> None:
        """Forget a hung request."""
        with self.lock:
            self.hung.get(model or ANY_MODEL, set()).discard(event)

    def heal(self, model: str | None) -> None:
        """Drop faults, latency and spent quota of ``model`` (all models if ``None``)."""
        with self.lock:
            keys = list({*self.faults, *self.latency, *self.quotas, *self.hung})
            for key in keys if model is None else [model]:
                self.faults.pop(key, None)
                self.latency.pop(key, None)
                quota = self.quotas.get(key)
                if quota is not None:
                    quota.remaining_requests = quota.limit_requests
                    quota.remaining_tokens = quota.limit_tokens
                for event in self.hung.pop(key, set()):
                    event.set()

    def release_all(self) -> None:
        """Let every hung request go (the server is stopping)."""
        with self.lock:
            self.stopping.set()
            for events in self.hung.values():
                for event in events:
                    event.set()
