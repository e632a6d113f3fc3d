"""Packaging metadata: one version source, a licence file, classifiers for every Python
version requires-python admits (up to the newest classifier listed), project URLs."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import modelwatch

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_one_version_source() -> None:
    project = PROJECT["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    path = PROJECT["tool"]["hatch"]["version"]["path"]
    text = (ROOT / path).read_text()
    assert f'__version__ = "{modelwatch.__version__}"' in text


def test_license_file_is_the_apache_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["project"]["license"] == "Apache-2.0"


def test_classifiers_cover_every_admitted_python_version() -> None:
    project = PROJECT["project"]
    floor = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert floor is not None
    minors = sorted(
        int(m.group(1))
        for c in project["classifiers"]
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    )
    assert minors[0] == int(floor.group(1))
    assert minors == list(range(minors[0], minors[-1] + 1))  # no gap from the floor up


def test_project_urls_and_extras() -> None:
    project = PROJECT["project"]
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(project["urls"])
    extras = project["optional-dependencies"]
    assert any("system-metrics" in req for req in extras["system-metrics"])
    assert "system-metrics" in extras["all"][0]
