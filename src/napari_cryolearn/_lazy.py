"""Lazy package namespaces (PEP 562): a package exports names without importing the modules
that define them until one is used.

Every ``__init__.py`` of the package uses :func:`attach`::

    from napari_cryolearn._lazy import attach

    __getattr__, __dir__, __all__ = attach(__name__, {"read_mrc": "mrc", "read_star": "star"})

``from napari_cryolearn.io import read_mrc`` then imports ``napari_cryolearn.io.mrc`` at that
moment, and ``import napari_cryolearn.io`` alone imports nothing but this module. A submodule
is reached as an attribute too (``napari_cryolearn.io.star`` after ``import napari_cryolearn.io``),
as it was when the package imported its submodules eagerly. Only the standard library is used
here, so that listing stages or printing ``cryolearn --help`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package_name: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the package ``package_name``.

    ``names`` maps each exported name to the submodule (relative to the package) that defines
    it under the same name. ``__getattr__(name)`` imports that submodule, stores the value in
    the package's namespace (so later look-ups do not come back here) and returns it; a name
    that is not in the table but is a submodule of the package is imported and returned as the
    module; anything else raises ``AttributeError`` naming the package. ``__all__`` is the
    table's names, in the table's order.

    >>> getattr_, dir_, all_ = attach("napari_cryolearn.engine", {"StopFlag": "stop"})
    >>> all_
    ['StopFlag']
    >>> getattr_("StopFlag").__name__
    'StopFlag'
    >>> getattr_("no_such_name")
    Traceback (most recent call last):
    ...
    AttributeError: module 'napari_cryolearn.engine' has no attribute 'no_such_name'
    """
    table = dict(names)
    for name, submodule in table.items():
        if not name.isidentifier() or not all(part.isidentifier() for part in submodule.split(".")):
            raise ValueError(f"{package_name}: bad lazy entry {name!r} -> {submodule!r}")

    def __getattr__(name: str) -> Any:
        package = sys.modules[package_name]
        if name in table:
            module = importlib.import_module(f"{package_name}.{table[name]}")
            try:
                value = getattr(module, name)
            except AttributeError:
                raise AttributeError(
                    f"module {package_name!r} has no attribute {name!r}: "
                    f"its lazy table names {module.__name__!r}, which does not define it"
                ) from None
            setattr(package, name, value)
            return value
        if not name.startswith("__") and name.isidentifier() and _is_submodule(package, name):
            return importlib.import_module(f"{package_name}.{name}")
        raise AttributeError(f"module {package_name!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        package = sys.modules[package_name]
        return sorted(set(vars(package)) | set(table) | set(_submodules(package)))

    return __getattr__, __dir__, list(table)


def _is_submodule(package: Any, name: str) -> bool:
    full = f"{package.__name__}.{name}"
    if full in sys.modules:
        return True
    if not hasattr(package, "__path__"):
        return False
    return importlib.util.find_spec(full) is not None


def _submodules(package: Any) -> list[str]:
    import pkgutil

    return [info.name for info in pkgutil.iter_modules(getattr(package, "__path__", []))]
