"""``modelwatch rules``: print the Prometheus alert rules (YAML).

    modelwatch rules > modelwatch-alerts.yml
    modelwatch rules --slo 0.995 --selector 'env="prod"' --names collector
    modelwatch rules --set latency_window=10m --set error_rate_threshold=0.02
    modelwatch rules --list

Every :class:`~modelwatch.ops.rules.RuleOptions` field can be set with ``--set NAME=VALUE``
(durations without the ``_s`` suffix take Prometheus durations such as ``5m``; lists are
comma-separated). The burn-rate window tables are set from Python only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelwatch.ops.durations import parse_duration
from modelwatch.ops.promnames import NAMINGS
from modelwatch.ops.rules import RuleOptions, build_alerts, render_rules

__all__ = ["main", "options_from_settings"]

_NOT_SETTABLE = frozenset({"naming", "extra_labels", "slo_fast_burn", "slo_slow_burn", "slo_tiers"})


def _settable() -> dict[str, dataclasses.Field[Any]]:
    """``--set`` names: duration fields lose their ``_s`` suffix (``latency_window=5m``)."""
    found = {}
    for item in dataclasses.fields(RuleOptions):
        if item.name in _NOT_SETTABLE:
            continue
        key = item.name.removesuffix("_s") if item.metadata.get("duration") else item.name
        found[key] = item
    return found


def _convert(item: dataclasses.Field[Any], text: str) -> Any:
    if item.metadata.get("duration"):
        return parse_duration(text)
    hints = typing.get_type_hints(RuleOptions)
    kind = hints[item.name]
    if kind is float:
        return float(text)
    if kind is int:
        return int(text)
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def options_from_settings(base: RuleOptions, settings: Sequence[str]) -> RuleOptions:
    """``base`` with ``NAME=VALUE`` settings applied (the CLI's ``--set``).

    Raises:
        ValueError: an unknown name or a value that does not parse.
    """
    fields = _settable()
    changes: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"--set {setting!r}: expected NAME=VALUE with NAME one of: {known}")
        item = fields[key]
        changes[item.name] = _convert(item, value.strip())
    return dataclasses.replace(base, **changes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelwatch rules",
        description="Print Prometheus alert rules for modelwatch's metrics (YAML).",
        epilog="--set names (durations take 5m, 1h30m, ...; lists are comma-separated): "
        + ", ".join(sorted(_settable())),
    )
    parser.add_argument(
        "--names",
        choices=sorted(NAMINGS),
        default="sdk",
        help="how metric names reached Prometheus: sdk (in-process exporter, default), "
        "collector (OTel Collector, _ratio on unit-1 gauges), plain (no unit/_total suffixes)",
    )
    parser.add_argument("--selector", default="", help='extra label matchers, e.g. env="prod"')
    parser.add_argument("--service-label", default="job", help="label naming the service")
    parser.add_argument("--slo", type=float, help="availability SLO target (default 0.999)")
    parser.add_argument(
        "--slo-tier",
        action="append",
        default=[],
        metavar="TIER=TARGET",
        help="availability target of an SLO tier (critical, standard, batch; default "
        "critical=0.999 standard=0.99 batch=0.95); repeat for several",
    )
    parser.add_argument("--latency-threshold", type=float, help="p95 latency alert, seconds")
    parser.add_argument("--runbook-url", help="base URL of the runbooks")
    parser.add_argument(
        "--evaluation-interval", help="rule-group interval (default: Prometheus' global one)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        help="divide every window and `for` by this (60 turns minutes into seconds; for tests)",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="static label on every alert"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any other option"
    )
    parser.add_argument("--list", action="store_true", help="list the alerts instead")
    parser.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    return parser


def build_options(args: argparse.Namespace) -> RuleOptions:
    """The :class:`RuleOptions` the parsed command line asks for."""
    labels = {}
    for pair in args.label:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    options = RuleOptions(
        naming=NAMINGS[args.names],
        selector=args.selector,
        service_label=args.service_label,
        extra_labels=labels,
    )
    changes: dict[str, Any] = {}
    if args.slo is not None:
        changes["slo_target"] = args.slo
    if args.slo_tier:
        tiers = dict(options.slo_tiers)
        for pair in args.slo_tier:
            tier, sep, target = pair.partition("=")
            try:
                if not sep:
                    raise ValueError(pair)
                tiers[tier] = float(target)
            except ValueError:
                raise ValueError(f"--slo-tier {pair!r}: expected TIER=TARGET") from None
        changes["slo_tiers"] = tiers
    if args.latency_threshold is not None:
        changes["latency_threshold_s"] = args.latency_threshold
    if args.runbook_url:
        changes["runbook_url"] = args.runbook_url
    if args.evaluation_interval:
        changes["evaluation_interval_s"] = parse_duration(args.evaluation_interval)
    options = dataclasses.replace(options, **changes)
    options = options_from_settings(options, args.set)
    if args.scale:
        options = options.scaled(args.scale)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modelwatch rules``; returns the exit code (2 for bad options)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = build_options(args)
    except ValueError as exc:
        print(f"modelwatch rules: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for alert in build_alerts(options):
            print(f"{alert.name:<34} {alert.severity:<8} {alert.group}")
        return 0
    text = render_rules(options)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
