"""Attributes of a package that import their module on first access (PEP 562), so that ``import medzoo`` and a
bundle's config import only the parts that bundle uses, and hence only the third-party packages its metadata lists
(a 3D segmentation bundle never imports timm)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


def lazy_attributes(
    package: str, attributes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        attributes: attribute name -> submodule (relative to ``package``) that defines it; an attribute named like
            its submodule is the submodule itself.

    Example (in a package ``__init__.py``)::

        __getattr__, __dir__ = lazy_attributes(__name__, {"hybridmednet": "hybridmednet", "HybridMedNet": "hybridmednet"})
    """

    def __getattr__(name: str) -> Any:
        submodule = attributes.get(name)
        if submodule is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        module: ModuleType = importlib.import_module(f"{package}.{submodule}")
        return module if submodule == name else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(attributes))

    return __getattr__, __dir__
