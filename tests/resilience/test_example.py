"""examples/failover.py runs and shows what it promises (failover, breaker, recovery)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "failover.py"


def test_failover_example_runs_and_recovers() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    out = done.stdout
    assert "the primary was asked 3 times for 5 calls" in out
    assert "modelwatch.circuit.transitions half_open -> closed (recovered): 1" in out
    assert "[google/flan-t5-large] Summarize: back to normal." in out
    # the failed first attempt is linked from the route span; the backup's is its child
    assert "linked 'text_completion google/flan-t5-large' attempt=1 error.type=unavailable" in out
    assert "child 'text_completion facebook/bart-large-cnn' attempt=2 error.type=None" in out
