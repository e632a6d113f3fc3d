"""``modelwatch.huggingface``: telemetry for ``huggingface_hub`` clients with no call-site change.

>>> import modelwatch.huggingface
>>> modelwatch.huggingface.instrument()     # every InferenceClient call is now monitored
>>> modelwatch.huggingface.uninstrument()   # the original methods are back

See :mod:`modelwatch.integrations.huggingface` and ``docs/huggingface.md``.
"""

from modelwatch.integrations.huggingface import (
    METHODS,
    PROVIDER,
    instrument,
    is_instrumented,
    uninstrument,
)

__all__ = ["METHODS", "PROVIDER", "instrument", "is_instrumented", "uninstrument"]
