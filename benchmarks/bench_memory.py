"""Resident memory of a process making 1,000,000 ``@monitored`` calls: does it grow after warm-up?

Each scenario runs in its own subprocess (a fresh interpreter, one telemetry pipeline), which
makes ``calls`` monitored calls in a tight loop and reads its RSS from ``/proc/self/statm`` after
a ``gc.collect()`` at the end of warm-up and then every tenth of the run. It also counts the
objects the garbage collector tracks and modelwatch's in-flight registry, which show a leak
independently of the allocator's habits. The scenarios run side by side.

- ``otlp-live``: ``modelwatch.configure(otlp_endpoint=<local sink that answers 200>)``; each
  sample is taken after ``modelwatch.flush()``, so it does not measure how full the export
  queue happened to be;
- ``otlp-dead-hung``: an endpoint that accepts and never answers (the export queue stays full,
  so its bound is what keeps memory flat).

Run: ``.venv/bin/python benchmarks/bench_memory.py [--quick|--full] [--calls N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BlackholeEndpoint, OtlpSink, machine_description, rss_bytes  # noqa: E402

MODES = {"quick": (10_000, 100_000), "default": (50_000, 1_000_000), "full": (100_000, 1_000_000)}
SAMPLES = 10
MIB = 1024 * 1024


def malloc_in_use() -> int | None:
    """Bytes glibc's malloc has handed out and not got back (``mallinfo2``: heap + mmapped),
    or ``None`` elsewhere. RSS minus this is memory malloc holds free (fragmentation)."""
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                    "fsmblks", "uordblks", "fordblks", "keepcost",
                )
            ]  # fmt: skip

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)
    except (OSError, AttributeError):
        return None


def child(endpoint: str, warmup: int, calls: int, drain: bool) -> None:
    import _common

    _common.install_offline_guard()
    import modelwatch
    from modelwatch.capture import call as call_module

    modelwatch.configure(service_name="modelwatch-bench-memory", otlp_endpoint=endpoint)

    @modelwatch.monitored(
        model="google/flan-t5-large",
        provider="huggingface",
        operation="text_generation",
        analysis="code_review",
    )
    def generate(prompt: str) -> str:
        return prompt

    def snapshot(done: int) -> dict[str, Any]:
        if drain:  # empty the export queue first, so RSS is not "how full the queue was"
            modelwatch.flush(timeout_s=10.0)
        gc.collect()
        return {
            "calls": done,
            "rss": rss_bytes(),
            "gc_objects": len(gc.get_objects()),
            # every live pymalloc block, GC-tracked or not (str, bytes, floats...)
            "allocated_blocks": sys.getallocatedblocks(),
            "malloc_in_use": malloc_in_use(),
            "in_flight": len(getattr(call_module, "_inflight", ())),
        }

    for _ in range(warmup):
        generate("Review this code: x = 1")
    points = [snapshot(0)]
    step = calls // SAMPLES
    started = time.perf_counter()
    done = 0
    while done < calls:
        for _ in range(step):
            generate("Review this code: x = 1")
        done += step
        points.append(snapshot(done))
    elapsed = time.perf_counter() - started
    dropped = None
    try:
        from modelwatch._config import _BoundedBatchSpanProcessor

        dropped = _BoundedBatchSpanProcessor.dropped
    except Exception:
        pass
    print(
        json.dumps(
            {
                "points": points,
                "elapsed_s": round(elapsed, 1),
                "spans_dropped": dropped,
                "blocked_connections": _common.blocked_connections,
            }
        ),
        flush=True,
    )
    import os

    os._exit(0)  # do not wait for a dead endpoint's export timeout at exit


def run(mode: str, calls: int | None = None) -> dict[str, Any]:
    warmup, default_calls = MODES[mode]
    calls = calls or default_calls
    sink, hung = OtlpSink(), BlackholeEndpoint()
    scenarios = {"otlp-live": sink.endpoint, "otlp-dead-hung": hung.endpoint}
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                endpoint,
                "--warmup",
                str(warmup),
                "--calls",
                str(calls),
                *(["--drain"] if name == "otlp-live" else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(HERE),
        )
        for name, endpoint in scenarios.items()
    }
    results: dict[str, Any] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=3600)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            results[name] = {"error": f"exit {proc.returncode}: {err[-2000:]}"}
            continue
        results[name] = json.loads(lines[-1])
    sink.close()
    hung.close()
    return {
        "mode": mode,
        "warmup_calls": warmup,
        "calls": calls,
        "machine": machine_description(),
        "scenarios": results,
    }


def slope_mib_per_million(points: list[dict[str, Any]]) -> float:
    """Least-squares slope of RSS against calls, in MiB per 1,000,000 calls."""
    xs = [p["calls"] for p in points]
    ys = [p["rss"] / MIB for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 1_000_000


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Judge "no growth after warm-up" over the last 80 % of the run (the first 20 % finishes
    warming up the export queue and the allocator).

    The noise-free signal is the Python heap: ``sys.getallocatedblocks()`` (every live object,
    GC-tracked or not) must stay within 0.5 %. RSS also moves with the allocator's arenas and
    the exporter's buffers (±2 MiB here between samples), so it must only stay within 5 %;
    its least-squares slope is reported for the record.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, r in results["scenarios"].items():
        if "points" not in r:
            continue
        tail = r["points"][2:]
        first, last = tail[0], tail[-1]
        blocks_growth = (last["allocated_blocks"] - first["allocated_blocks"]) / first[
            "allocated_blocks"
        ]
        rss_growth = (last["rss"] - first["rss"]) / first["rss"]
        out[name] = {
            "growth_tail_mib": (last["rss"] - first["rss"]) / MIB,
            "rss_growth_tail": rss_growth,
            "blocks_growth_tail": blocks_growth,
            "slope_mib_per_million": slope_mib_per_million(tail),
            "met": abs(blocks_growth) < 0.005 and rss_growth < 0.05,
        }
    return out


def render(results: dict[str, Any]) -> str:
    judged = verdicts(results)
    out = [
        f"modelwatch {results['machine'].get('modelwatch_commit')}. "
        f"Resident memory (RSS, /proc/self/statm, after gc.collect()) of a process making "
        f"{results['calls']:,} monitored calls after {results['warmup_calls']:,} warm-up calls.",
        "",
        "| scenario | RSS after warm-up MiB | RSS at 20 % | RSS at end | RSS growth, last 80 % "
        "| RSS slope, last 80 % (MiB per 1M calls) | Python blocks at 20 % → end "
        "| GC objects warm-up → end | no growth? | in-flight at end | spans dropped | calls/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|",
    ]
    for name, r in results["scenarios"].items():
        if "error" in r:
            out.append(f"| {name} | failed: {r['error'][:200]} |||||||||||")
            continue
        points = r["points"]
        first, at20, last = points[0], points[2], points[-1]
        v = judged[name]
        rate = last["calls"] / r["elapsed_s"] if r["elapsed_s"] else 0
        out.append(
            f"| {name} | {first['rss'] / MIB:.1f} | {at20['rss'] / MIB:.1f} | "
            f"{last['rss'] / MIB:.1f} | {v['growth_tail_mib']:+.1f} MiB "
            f"({v['rss_growth_tail']:+.1%}) | {v['slope_mib_per_million']:+.2f} | "
            f"{at20['allocated_blocks']:,} → {last['allocated_blocks']:,} "
            f"({v['blocks_growth_tail']:+.2%}) | "
            f"{first['gc_objects']:,} → {last['gc_objects']:,} | {'yes' if v['met'] else 'NO'} | "
            f"{last['in_flight']} | "
            f"{r['spans_dropped']} | {rate:,.0f} |"
        )
    out.append("")
    out.append("RSS (MiB) and GC-tracked objects every tenth of the run:")
    for name, r in results["scenarios"].items():
        if "points" in r:
            series = ", ".join(f"{p['rss'] / MIB:.1f}" for p in r["points"])
            objects = ", ".join(f"{p['gc_objects']:,}" for p in r["points"])
            blocks = ", ".join(f"{p.get('allocated_blocks', 0):,}" for p in r["points"])
            malloc = ", ".join(f"{(p.get('malloc_in_use') or 0) / MIB:.1f}" for p in r["points"])
            out.append(
                f"- {name}: RSS {series}; malloc in use (MiB) {malloc}; "
                f"GC objects {objects}; Python blocks {blocks}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="100,000 calls")
    mode.add_argument("--full", action="store_true", help="1,000,000 calls, longer warm-up")
    parser.add_argument("--calls", type=int, help="override the number of measured calls")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.warmup, args.calls, args.drain)
        return 0
    chosen = "quick" if args.quick else "full" if args.full else "default"
    results = run(chosen, args.calls)
    print(render(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
