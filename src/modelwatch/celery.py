"""``modelwatch.celery``: Celery task spans and metrics, producer to worker.

>>> from celery import Celery
>>> import modelwatch.celery
>>> app = Celery("ai_engine", broker="memory://")
>>> modelwatch.celery.instrument(app)

See :mod:`modelwatch.integrations.celery` and ``docs/celery.md``.
"""

from modelwatch.integrations.celery import (
    HEADER_PUBLISHED_AT,
    OUTCOME_FAILURE,
    OUTCOME_RETRY,
    OUTCOME_REVOKED,
    OUTCOME_SUCCESS,
    CeleryInstrumentor,
    instrument,
    is_instrumented,
    monitored_task,
    uninstrument,
)

__all__ = [
    "HEADER_PUBLISHED_AT",
    "OUTCOME_FAILURE",
    "OUTCOME_RETRY",
    "OUTCOME_REVOKED",
    "OUTCOME_SUCCESS",
    "CeleryInstrumentor",
    "instrument",
    "is_instrumented",
    "monitored_task",
    "uninstrument",
]
