"""The overhead benchmark's analysis: per-call medians, overheads over the bare call, paired
ratios against the hand-written OpenTelemetry code, the targets, and the Markdown report."""

from __future__ import annotations

from typing import Any

from _common import fmt_us, median, quantile

METRICS = ("ns_per_call", "cpu_ns_per_call")


def _overheads(samples: dict[str, list[float]], variant: str) -> list[float]:
    base = "bare async" if variant.endswith("async") else "bare"
    return [v - b for v, b in zip(samples[variant], samples[base], strict=True)]


def _paired_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    ratios = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return median(ratios), quantile(ratios, 0.25), quantile(ratios, 0.75)


def _table(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for scenario, variants in samples.items():
        rows = {}
        for variant, values in variants.items():
            row: dict[str, Any] = {"per_call_ns": median(values)}
            if not variant.startswith("bare"):
                ov = _overheads(variants, variant)
                row.update(
                    overhead_ns=median(ov),
                    overhead_p25=quantile(ov, 0.25),
                    overhead_p75=quantile(ov, 0.75),
                )
                ref = (
                    "hand-written OTel async" if variant.endswith("async") else "hand-written OTel"
                )
                if ref in variants and variant != ref:
                    row["vs_handwritten"] = _paired_ratio(ov, _overheads(variants, ref))
            rows[variant] = row
        table[scenario] = rows
    return table


def _targets(samples: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, goal: str, value: tuple[float, float, float], ok: bool) -> None:
        targets.append({"target": name, "goal": goal, "value": value, "met": ok})

    for scenario in ("discard", "otlp-live", "traceloop", "openlit"):
        variants = samples.get(scenario, {})
        for suffix in ("", " async"):
            if f"@monitored{suffix}" in variants:
                r = _paired_ratio(
                    _overheads(variants, f"@monitored{suffix}"),
                    _overheads(variants, f"hand-written OTel{suffix}"),
                )
                add(
                    f"@monitored{suffix} / hand-written OTel [{scenario}]",
                    "<= 1.00",
                    r,
                    r[0] <= 1.0,
                )
    for peer in ("traceloop", "openlit"):
        variants = samples.get(peer, {})
        for variant in variants:
            if variant.startswith(peer):
                mine = "@monitored async" if variant.endswith("async") else "@monitored"
                r = _paired_ratio(_overheads(variants, mine), _overheads(variants, variant))
                add(f"{mine} / {variant} [{peer}]", "< 1.00", r, r[0] < 1.0)
    if "otlp-live" in samples and "otlp-unsampled" in samples:
        r = _paired_ratio(
            _overheads(samples["otlp-unsampled"], "@monitored"),
            _overheads(samples["otlp-live"], "@monitored"),
        )
        add("@monitored unsampled / sampled [otlp]", "<= 0.33", r, r[0] <= 1 / 3)
    for dead in ("otlp-dead-refused", "otlp-dead-hung"):
        if "otlp-live" in samples and dead in samples:
            r = _paired_ratio(
                _overheads(samples[dead], "@monitored"),
                _overheads(samples["otlp-live"], "@monitored"),
            )
            add(f"@monitored {dead} / otlp-live", "0.90-1.10", r, 0.9 <= r[0] <= 1.1)
    return targets


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    """Median per-call times and overheads, paired ratios, and the targets, for both clocks."""
    return {
        metric: {
            "table": _table(results["samples"][metric]),
            "targets": _targets(results["samples"][metric]),
        }
        for metric in METRICS
    }


_CLOCKS = {
    "ns_per_call": "wall clock (perf_counter_ns)",
    "cpu_ns_per_call": "calling thread's CPU time (thread_time_ns)",
}


def summary(analysis: dict[str, Any]) -> list[str]:
    """One line per non-bare variant: overhead and ratio to hand-written, both clocks."""
    wall = analysis["ns_per_call"]["table"]
    cpu = analysis["cpu_ns_per_call"]["table"]
    out = [
        "| scenario | variant | overhead µs, wall | x hand-written, wall "
        "| overhead µs, thread CPU | x hand-written, thread CPU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario, rows in wall.items():
        for variant, row in rows.items():
            if variant.startswith("bare"):
                continue
            crow = cpu[scenario][variant]
            ratio_w = f"{row['vs_handwritten'][0]:.2f}" if "vs_handwritten" in row else "1"
            ratio_c = f"{crow['vs_handwritten'][0]:.2f}" if "vs_handwritten" in crow else "1"
            out.append(
                f"| {scenario} | {variant} | {fmt_us(row['overhead_ns'])} | {ratio_w} "
                f"| {fmt_us(crow['overhead_ns'])} | {ratio_c} |"
            )
    return out


def render(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"modelwatch {m.get('modelwatch_commit')}. "
        f"Machine: {m['cpu']}, {m['cores']} cores, load {m['load_avg']}, Python {m['python']}. "
        f"Mode {results['mode']}: {results['rounds']} rounds x {results['calls_per_round']} calls "
        f"per variant, interleaved in chunks of {results['chunk']} ({results['elapsed_s']} s)."
    )
    out.append("")
    out.append("### Summary (medians over rounds; ratios are medians of paired rounds)")
    out.append("")
    out.extend(summary(analysis))
    for metric in METRICS:
        table = analysis[metric]["table"]
        out.append("")
        out.append(f"### Per-call cost, {_CLOCKS[metric]}")
        out.append("")
        out.append("| scenario | variant | per call µs | overhead µs | p25-p75 | x hand-written |")
        out.append("|---|---|---:|---:|---:|---:|")
        for scenario, rows in table.items():
            for variant, row in rows.items():
                has = "overhead_ns" in row
                ov = fmt_us(row["overhead_ns"]) if has else "—"
                iqr = f"{fmt_us(row['overhead_p25'])}-{fmt_us(row['overhead_p75'])}" if has else "—"
                ratio = f"{row['vs_handwritten'][0]:.2f}" if "vs_handwritten" in row else "—"
                per_call = fmt_us(row["per_call_ns"])
                out.append(f"| {scenario} | {variant} | {per_call} | {ov} | {iqr} | {ratio} |")
    out.append("")
    out.append("### Targets (ratios of overheads, median of paired rounds, p25-p75)")
    out.append("")
    out.append("| target | goal | wall clock | met | thread CPU | met |")
    out.append("|---|---|---:|:-:|---:|:-:|")
    wall_t = analysis["ns_per_call"]["targets"]
    cpu_t = analysis["cpu_ns_per_call"]["targets"]
    for tw, tc in zip(wall_t, cpu_t, strict=True):
        vw, vc = tw["value"], tc["value"]
        out.append(
            f"| {tw['target']} | {tw['goal']} | {vw[0]:.2f} ({vw[1]:.2f}-{vw[2]:.2f}) | "
            f"{'yes' if tw['met'] else 'NO'} | {vc[0]:.2f} ({vc[1]:.2f}-{vc[2]:.2f}) | "
            f"{'yes' if tc['met'] else 'NO'} |"
        )
    out.append("")
    for scenario, why in results["skipped"].items():
        out.append(f"- not measured: {scenario}: {why}")
    for scenario, meta in results["meta"].items():
        info = meta["info"]
        blocked = meta.get("finish", {}).get("blocked_connections", [])
        dropped = meta.get("finish", {}).get("modelwatch_spans_dropped")
        unsampled = [k for k, s in meta["sanity"].items() if s["span"] and not s["sampled"]]
        nospan = [
            k for k, s in meta["sanity"].items() if not s["span"] and not k.startswith("bare")
        ]
        line = f"- {scenario}: {info['pipeline']}; opentelemetry-sdk {info['opentelemetry-sdk']}"
        for key in ("traceloop-sdk", "openlit"):
            if key in info:
                line += f"; {key} {info[key]}"
        line += f"; non-loopback connections refused: {len(blocked)}"
        if blocked:
            line += f" ({', '.join(blocked)})"
        if dropped:
            line += f"; spans dropped by modelwatch's full export queue: {dropped}"
        if unsampled:
            line += f"; unsampled spans: {', '.join(unsampled)}"
        if nospan:
            line += f"; NO span current in: {', '.join(nospan)}"
        out.append(line)
    out.append(f"- OTLP sink received: {results['sink_requests']}")
    return "\n".join(out)
