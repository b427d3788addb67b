"""Celery loaded on first use: the configured app is created when a process first imports ``celery``.

Celery's Django guide imports the app in the project package's ``__init__``, so that every task (``@shared_task``)
and every publish (``.delay()``, ``celery.current_app``) finds the configured app (its broker, routes, eager mode)
rather than Celery's default one, which would send to a broker nobody reads. That import costs 150–180 ms
(``celery.app``, kombu, PyYAML, click, ``importlib.metadata``) in every process, a backtest and ``--help``
included, which use no task. ``bind_on_first_import`` keeps the guarantee for the processes that do use Celery:
it creates the app (``cdb_project/celery.py``) right after the first ``import celery`` of the process, whoever
makes it (a tasks module's ``shared_task``, the bus's publish, the ``celery`` command), or at once when Celery
is already loaded (the worker's command imports it before the project).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

APP_MODULE = "cdb_project.celery"


class _ThenCreateTheApp(importlib.abc.Loader):
    """Celery's own loader, then the project's app."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        importlib.import_module(APP_MODULE)

    def __getattr__(self, name: str):  # anything else a loader is asked (resources, source): Celery's loader's
        return getattr(self.loader, name)


class _CeleryFinder(importlib.abc.MetaPathFinder):
    """Finds ``celery`` as the path finder does, once, with the loader above."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != "celery":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenCreateTheApp(spec.loader)
        return spec


def bind_on_first_import() -> None:
    """Create the configured Celery app when ``celery`` is first imported (now, if it already is)."""
    if "celery" in sys.modules:
        importlib.import_module(APP_MODULE)
    elif not any(isinstance(finder, _CeleryFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CeleryFinder())
