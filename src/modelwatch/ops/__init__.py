"""modelwatch.ops: what an operations team runs, generated from :mod:`modelwatch.semconv`.

- :mod:`modelwatch.ops.rules`: Prometheus alert rules (``modelwatch rules``);
- :mod:`modelwatch.ops.alertmanager`: the example Alertmanager routes and inhibitions;
- :mod:`modelwatch.ops.dashboards`: Grafana dashboards (``modelwatch dashboard``; extra
  ``dashboards``);
- :mod:`modelwatch.ops.runbooks`: ``docs/runbooks/``, one page per alert;
- :mod:`modelwatch.ops.deploy`: ``examples/deploy/``;
- :mod:`modelwatch.ops.promnames`: the OpenTelemetry -> Prometheus name translation they share.

Nothing is imported here, so ``modelwatch <command>`` loads only what it runs.
"""
