"""``modelwatch dashboard``: print a Grafana dashboard (JSON), ready to import.

    modelwatch dashboard > modelwatch.json               # the service overview
    modelwatch dashboard model > modelwatch-model.json   # the per-model drill-down
    modelwatch dashboard --output-dir grafana/           # both, as <uid>.json
    modelwatch dashboard --names collector --selector 'env="prod"'

Needs the ``dashboards`` extra: ``pip install 'modelwatch[dashboards]'``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelwatch.ops.promnames import NAMINGS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelwatch dashboard",
        description="Print a Grafana dashboard for modelwatch's metrics (JSON).",
    )
    parser.add_argument(
        "which",
        nargs="?",
        choices=("overview", "model"),
        default="overview",
        help="overview (default) or the per-model drill-down",
    )
    parser.add_argument(
        "--names",
        choices=sorted(NAMINGS),
        default="sdk",
        help="metric naming, as for `modelwatch rules`",
    )
    parser.add_argument("--selector", default="", help='extra label matchers, e.g. env="prod"')
    parser.add_argument("--service-label", default="job", help="label naming the service")
    parser.add_argument("--refresh", default="30s", help="dashboard refresh interval")
    parser.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    parser.add_argument("--output-dir", type=Path, help="write every dashboard into this folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modelwatch dashboard``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        from modelwatch.ops.dashboards import DASHBOARDS, DashboardOptions, render_dashboard

        options = DashboardOptions(
            naming=NAMINGS[args.names],
            selector=args.selector,
            service_label=args.service_label,
            refresh=args.refresh,
        )
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            for name, uid in DASHBOARDS.items():
                (args.output_dir / f"{uid}.json").write_text(render_dashboard(name, options))  # type: ignore[arg-type]
            return 0
        text = render_dashboard(args.which, options)
    except ImportError as exc:
        print(f"modelwatch dashboard: {exc}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
