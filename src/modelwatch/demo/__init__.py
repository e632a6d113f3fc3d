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

from modelwatch.demo.cli import main, parse_args, run

__all__ = ["main", "parse_args", "run"]
