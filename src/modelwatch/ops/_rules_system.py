"""The ``modelwatch.system`` rule group: process resources, from the system-metrics
instrumentation (``modelwatch.configure(system_metrics=True)``)."""

from __future__ import annotations

from modelwatch.ops._promql import Queries, num
from modelwatch.ops._rule_options import AlertRule
from modelwatch.ops.durations import format_duration

__all__ = ["system_alerts"]


def system_alerts(q: Queries) -> list[AlertRule]:
    """``ModelwatchMemoryGrowth``: a process whose resident memory keeps climbing (per
    instance: memory is each worker's own)."""
    o = q.o
    svc, inst = q.svc, q.instance
    by = f"{svc}, {inst}"
    rss = q.sel(q.process_memory)
    window = format_duration(o.memory_growth_window_s)
    horizon = format_duration(o.memory_growth_horizon_s)
    expr = (
        f"max by ({by}) (\n"
        f"predict_linear({rss}[{window}], {o.memory_growth_horizon_s})\n/\n{rss}\n)\n"
        f"> {num(o.memory_growth_ratio)}\n"
        f"and\nmax by ({by}) ({rss}) > {num(o.memory_min_bytes)}"
    )
    return [
        AlertRule(
            "ModelwatchMemoryGrowth",
            "modelwatch.system",
            expr,
            o.memory_growth_for_s,
            "warning",
            f"Memory of {{{{ $labels.{svc} }}}} ({{{{ $labels.{inst} }}}}) keeps growing",
            f"At the pace of the last {window}, the resident memory of {{{{ $labels.{svc} }}}} "
            f"instance {{{{ $labels.{inst} }}}} will be {{{{ $value | humanize }}}}x what it is "
            f"now in {horizon} (threshold {num(o.memory_growth_ratio)}x, over "
            f"{num(o.memory_min_bytes / 2**20)} MiB): a leak, or a cache without a bound.",
        ),
    ]
