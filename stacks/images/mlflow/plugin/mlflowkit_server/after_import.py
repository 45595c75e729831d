"""Run a function on a module of MLflow right after every import of it, without importing it first.

The image's ``mlflowkit-server.pth`` loads the kit's hooks at interpreter start, before MLflow is imported (most
processes in the image never import it: pip, the healthchecks' Python). :func:`register` puts one finder in front of
``sys.meta_path`` that finds nothing itself: for a registered module it wraps the loader the normal path finder
returns, so the hooks run once the module's code has executed, and before the importer gets it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], Any]
HOOKS: dict[str, list[Hook]] = {}


def register(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` after every import of module ``name`` from now on (every time, not once: the launcher
    imports ``mlflow.server`` again under the server's environment, :mod:`mlflowkit_server.in_process`)."""
    HOOKS.setdefault(name, []).append(hook)
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None):
        if name not in HOOKS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, HOOKS[name])
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, hooks: list[Hook]) -> None:
        self.loader, self.hooks = loader, hooks

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        for hook in self.hooks:
            hook(module)
