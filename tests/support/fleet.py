"""Helpers shared by the fleet tests (tests/test_fleet_servers.py, the Celery fleet test in
tests/integrations/): what the processes registered for Prometheus ``file_sd``, and a
Prometheus config that discovers them.

    prom = prometheus_server(file_sd_config("fleet", sd_dir))
    assert len(discovered(sd_dir)) == 2        # pid -> "host:port", one per process
"""

from __future__ import annotations

import json
from pathlib import Path


def discovered(sd_dir: Path) -> dict[int, str]:
    """pid -> ``host:port`` of every modelwatch targets file in ``sd_dir`` (a file being
    replaced is skipped)."""
    found = {}
    for path in sd_dir.glob("modelwatch-*.json"):
        try:
            (entry,) = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found[int(entry["labels"]["pid"])] = entry["targets"][0]
    return found


def file_sd_config(job: str, sd_dir: Path) -> str:
    """A prometheus.yml (JSON is YAML) whose job ``job`` scrapes every 1 s what ``file_sd``
    finds in ``sd_dir`` (re-read every second)."""
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "file_sd_configs": [
                        {"files": [str(sd_dir / "*.json")], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
    )
