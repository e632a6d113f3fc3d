"""The files of ``examples/deploy/``, generated: Prometheus, rules, Alertmanager, Grafana.

    python -m modelwatch.ops.deploy examples/deploy     # rewrite the checked-in examples

A test fails when the checked-in files differ from :func:`deploy_files`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelwatch.ops import _yaml
from modelwatch.ops.alertmanager import AlertmanagerOptions, render_alertmanager
from modelwatch.ops.durations import format_duration
from modelwatch.ops.rules import RuleOptions, render_rules

__all__ = [
    "DeployOptions",
    "deploy_files",
    "main",
    "prometheus_config",
    "render_grafana_provider",
    "render_prometheus",
]

RULES_FILE = "modelwatch-alerts.yml"


@dataclass(frozen=True)
class DeployOptions:
    """Where things run in the example stack, and how often Prometheus looks."""

    scrape_interval_s: int = 15
    evaluation_interval_s: int = 15
    job_name: str = "modelwatch-engine"
    #: fixed /metrics targets (``modelwatch.configure(prometheus_port=9464)`` without
    #: discovery). None by default: the processes register themselves through file_sd, and a
    #: static target on a port of their range would scrape that worker twice
    targets: tuple[str, ...] = ()
    alertmanagers: tuple[str, ...] = ("127.0.0.1:9093",)
    #: fleets: each process's file_sd target (``MODELWATCH_PROMETHEUS_SD_DIR``, docs/deployment.md)
    sd_files: tuple[str, ...] = ("/var/lib/modelwatch/sd/*.json",)
    rule_files: tuple[str, ...] = (RULES_FILE,)


def prometheus_config(options: DeployOptions | None = None) -> dict[str, object]:
    """``prometheus.yml`` as a mapping."""
    o = options or DeployOptions()
    return {
        "global": {
            "scrape_interval": format_duration(o.scrape_interval_s),
            "evaluation_interval": format_duration(o.evaluation_interval_s),
        },
        "rule_files": list(o.rule_files),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": list(o.alertmanagers)}]}]},
        "scrape_configs": [
            {
                "job_name": o.job_name,
                **({"static_configs": [{"targets": list(o.targets)}]} if o.targets else {}),
                **(
                    {"file_sd_configs": [{"files": list(o.sd_files), "refresh_interval": "30s"}]}
                    if o.sd_files
                    else {}
                ),
            }
        ],
    }


def render_prometheus(options: DeployOptions | None = None) -> str:
    """``prometheus.yml`` as YAML text."""
    header = (
        "Example Prometheus configuration: scrape a service instrumented with modelwatch\n"
        "and load the generated alert rules (modelwatch.ops.deploy). Every process registers\n"
        "itself in the file_sd directory (MODELWATCH_PROMETHEUS_SD_DIR); for one process\n"
        "without it, use static_configs: [{targets: ['127.0.0.1:9464']}] instead (not both:\n"
        "a static target on a port of the range scrapes that worker twice)."
    )
    return _yaml.dump(prometheus_config(options), header=header)


def render_grafana_provider(path: str = "/var/lib/grafana/dashboards/modelwatch") -> str:
    """A Grafana dashboard provider (``provisioning/dashboards/``) loading the JSON in ``path``."""
    header = (
        "Grafana provisioning: copy to /etc/grafana/provisioning/dashboards/, and write the\n"
        f"dashboards into the path below: modelwatch dashboard --output-dir {path}"
    )
    document = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "modelwatch",
                "folder": "modelwatch",
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": 60,
                "allowUiUpdates": False,
                "options": {"path": path},
            }
        ],
    }
    return _yaml.dump(document, header=header)


def deploy_files() -> dict[str, str]:
    """Relative path -> text of every generated file in ``examples/deploy/``."""
    files = {
        "prometheus.yml": render_prometheus(),
        RULES_FILE: render_rules(RuleOptions()),
        "alertmanager.yml": render_alertmanager(AlertmanagerOptions()),
    }
    from modelwatch.ops.dashboards import DASHBOARDS, render_dashboard

    files["grafana/provisioning/modelwatch.yml"] = render_grafana_provider()
    try:
        for name, uid in DASHBOARDS.items():
            files[f"grafana/{uid}.json"] = render_dashboard(name)  # type: ignore[arg-type]
    except ImportError:  # the dashboards need the optional grafana-foundation-sdk
        return {k: v for k, v in files.items() if not k.endswith(".json")}
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Write :func:`deploy_files` into the folder given (default ``examples/deploy``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0] if args else "examples/deploy")
    for relative, text in deploy_files().items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
