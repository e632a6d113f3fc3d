"""Run modelwatch's benchmarks: ``make bench`` (or ``.venv/bin/python benchmarks/run.py``).

Runs the overhead benchmark (``bench_overhead.py``: ``@monitored`` against a bare call, a
hand-written OpenTelemetry equivalent and the peers' decorators, interleaved in one run) and the
memory benchmark (``bench_memory.py``: RSS over 1,000,000 monitored calls), then any other
``bench_*.py`` scripts in this folder (router, health, celery...), each in its own process.

    --quick      about 30 s each: a smoke run, not a result
    (default)    a few minutes
    --full       more rounds, for numbers to publish
    --only NAME  run only these scripts (comma-separated: overhead,memory,router,...)
    --list       print the scripts and how to run each one alone

Results (raw samples and tables) are written to ``benchmarks/results/`` (git-ignored).
The peers (OpenLLMetry, OpenLIT) are measured only if their venv exists: see ``peers.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIRST = ("bench_overhead.py", "bench_memory.py")
#: scripts that take our --quick/--full/--json flags (others get --quick only if they accept it)
OURS = set(FIRST) | {"bench_hotpath.py"}


def scripts() -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    ordered = [HERE / name for name in FIRST if (HERE / name).exists()]
    return ordered + [p for p in found if p.name not in FIRST]


def short(path: Path) -> str:
    return path.stem.removeprefix("bench_")


def accepts(path: Path, flag: str) -> bool:
    try:
        return flag in path.read_text("utf-8")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run modelwatch's benchmarks.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    parser.add_argument("--only", help="comma-separated script names, e.g. overhead,memory")
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = parser.parse_args(argv)
    available = scripts()
    if args.list:
        for path in available:
            print(f"{short(path):10s} {sys.executable} benchmarks/{path.name} [--quick|--full]")
        return 0
    chosen = available
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        chosen = [p for p in available if short(p) in wanted]
        missing = wanted - {short(p) for p in chosen}
        if missing:
            print(f"no such benchmark: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    failed: list[str] = []
    for path in chosen:
        cmd = [sys.executable, str(path)]
        for flag, on in (("--quick", args.quick), ("--full", args.full)):
            if on and (path.name in OURS or accepts(path, f'"{flag}"')):
                cmd.append(flag)
        if path.name in OURS or accepts(path, '"--json"'):
            cmd += ["--json", str(RESULTS / f"{short(path)}-{stamp}.json")]
        print(f"\n## {short(path)}: {' '.join(cmd[1:])}\n", flush=True)
        started = time.monotonic()
        with (RESULTS / f"{short(path)}-{stamp}.md").open("w") as report:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                report.write(line)
            proc.wait()
        print(f"\n({short(path)}: {time.monotonic() - started:.0f} s, exit {proc.returncode})")
        if proc.returncode != 0:
            failed.append(short(path))
    print(f"\nresults in {RESULTS}/*-{stamp}.*")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
