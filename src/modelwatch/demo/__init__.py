"""``modelwatch demo``: ``examples/engine.py`` under a scripted failure, watched live.

A package of its own, not part of :mod:`modelwatch.ops`: the generators in ``ops`` are library
code every user may run in production, the demo is an application built on the library (and on
the example engine). It may import any of modelwatch's public modules and the rule generator
(:func:`modelwatch.ops.rules.render_rules`, whose output a real Prometheus evaluates); nothing
in modelwatch imports it except the ``modelwatch`` command line.

============================  =========================================================
module                        what it does
============================  =========================================================
:mod:`~.cli`                  command line, set-up, orderly shutdown, summary
:mod:`~.engine`               ``examples/engine.py`` with demo timings and a recorder
:mod:`~.scenario`             the scripted incident
:mod:`~.record`               the demo's own account of every call and request
:mod:`~.prometheus`           a real Prometheus on 127.0.0.1 (installed when missing, as root)
:mod:`~.alerts`               the generated rules' options and what Prometheus fired
:mod:`~.view`                 live table, plain lines, summary
============================  =========================================================
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final, TextIO

__all__ = ["main", "parse_args", "run"]

#: What the demo imports beyond modelwatch's core, and the extra that installs it.
_NEEDS: Final = {
    "huggingface_hub": "huggingface",
    "openai": "openai",
    "prometheus_client": "prometheus",
    "opentelemetry.exporter.prometheus": "prometheus",
}


def _missing_extras() -> list[str]:
    import importlib.util

    missing = []
    for module, extra in _NEEDS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package
            found = False
        if not found and extra not in missing:
            missing.append(extra)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """``modelwatch demo``: run the demo; returns the exit code (0 unless misused).

    The engine imports the real model clients, so a missing extra is named before anything
    imports them.
    """
    missing = _missing_extras()
    if missing:
        print(
            f"modelwatch demo needs the real model clients and the Prometheus exporter: "
            f"pip install 'modelwatch[{','.join(missing)}]'",
            file=sys.stderr,
        )
        return 2
    from modelwatch.demo import cli

    return cli.main(argv)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``modelwatch demo`` options (:func:`modelwatch.demo.cli.parse_args`)."""
    from modelwatch.demo import cli

    return cli.parse_args(argv)


def run(args: argparse.Namespace, out: TextIO | None = None, *, live: bool | None = None) -> int:
    """Run the demo with parsed ``args`` (:func:`modelwatch.demo.cli.run`)."""
    from modelwatch.demo import cli

    return cli.run(args, out, live=live)
