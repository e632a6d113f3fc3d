"""The overview dashboard's System row: process and host resources per instance, from the
system-metrics instrumentation (``modelwatch.configure(system_metrics=True)``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelwatch.ops._grafana import RATE_INTERVAL, Target, timeseries

if TYPE_CHECKING:
    from modelwatch.ops.dashboards import _Names

__all__ = ["system_panels"]


def system_panels(n: _Names) -> Iterator[tuple[str, Any]]:
    """Process and host resources (``configure(system_metrics=True)``), per instance."""
    rate = f"[{RATE_INTERVAL}]"
    idle, used = 'state="idle"', 'state="used"'
    panels = (
        ("Process memory (RSS)", "Resident memory of each process.", "bytes",
         f"max by ({n.instance}) ({n.sel(n.process_memory, model=False)})"),
        ("Process CPU", "CPU seconds per second used by each process (1 = one core).", "short",
         f"sum by ({n.instance}) (rate({n.sel(n.process_cpu, model=False)}{rate}))"),
        ("Host CPU busy", "Share of the host's CPU time not idle.", "percentunit",
         f"1 - avg by ({n.instance}) "
         f"({n.sel(n.system_cpu, idle, model=False)})"),
        ("Host memory used", "Share of the host's memory in use.", "percentunit",
         f"max by ({n.instance}) ({n.sel(n.system_memory, used, model=False)})"),
        ("Network", "Bytes per second sent and received by the host.", "Bps",
         f"sum by ({n.instance}, direction) (rate({n.sel(n.network_io, model=False)}{rate}))"),
        ("Disk", "Bytes per second read and written by the host.", "Bps",
         f"sum by ({n.instance}, direction) (rate({n.sel(n.disk_io, model=False)}{rate}))"),
    )  # fmt: skip
    for title, description, unit, expr in panels:
        yield (
            "System (configure(system_metrics=True))",
            timeseries(title, description, unit, [Target(expr, f"{{{{{n.instance}}}}}")], width=8),
        )
