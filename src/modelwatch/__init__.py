"""modelwatch: see, and survive, what your models do.

The public surface is declared here once; everything else is internal.
"""

from modelwatch._version import __version__
from modelwatch.errors import (
    AllBackendsFailedError,
    Attempt,
    CircuitOpenError,
    ConfigurationError,
    ModelwatchError,
    StreamInterruptedError,
)

__all__ = [
    "AllBackendsFailedError",
    "Attempt",
    "CircuitOpenError",
    "ConfigurationError",
    "ModelwatchError",
    "StreamInterruptedError",
    "__version__",
]
