"""The ``modelwatch`` command: ``demo``, ``rules``, ``dashboard``, ``check URL``.

Each subcommand lives in the module that does its job and exposes ``main(argv) -> int``;
this file only dispatches, so ``modelwatch --help`` stays fast and imports nothing heavy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module with ``main(argv) -> int``, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("modelwatch.demo", "run a simulated AI engine under failure, watched live"),
    "rules": ("modelwatch.ops.rules_cli", "print Prometheus alert rules (YAML)"),
    "dashboard": ("modelwatch.ops.dashboard_cli", "print a Grafana dashboard (JSON)"),
    "check": (
        "modelwatch.health.check_cli",
        "query a health endpoint; exit 0 ok, 1 degraded, 2 down",
    ),
}


def _usage() -> str:
    lines = ["usage: modelwatch <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'modelwatch <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``modelwatch`` command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        from modelwatch._version import __version__

        print(f"modelwatch {__version__}")
        return 0
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"modelwatch: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
