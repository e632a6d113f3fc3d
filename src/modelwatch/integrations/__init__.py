"""Client-library integrations, one module each (``huggingface``, ``openai``, ``celery``,
``logging``).

``modelwatch.huggingface``, ``modelwatch.openai`` and ``modelwatch.celery`` are the documented
import paths: each *is* the module ``modelwatch.integrations.<name>`` (the same object, so one
import path, not a copy), made importable under the short name by a small import hook installed
with the package. Type checkers read the ``.pyi`` stubs next to ``modelwatch/__init__.py``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Final

#: ``modelwatch.<name>`` -> ``modelwatch.integrations.<name>``
ALIASES: Final = frozenset({"huggingface", "openai", "celery"})
_PREFIX: Final = "modelwatch."


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``modelwatch.<name>`` as the already-built ``modelwatch.integrations.<name>``."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith(_PREFIX) and fullname[len(_PREFIX) :] in ALIASES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(f"modelwatch.integrations.{spec.name[len(_PREFIX) :]}")

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the integration module is built already."""


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.append(_AliasFinder())
