"""One named background thread with a stop event: the demo's scenario runner and alert watcher."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs ``target(stop)`` on a thread named ``name``; :meth:`stop` sets ``stop`` and joins."""

    def __init__(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=target, args=(self.stopping,), name=name)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it."""
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join()
