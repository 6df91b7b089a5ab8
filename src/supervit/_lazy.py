"""Lazy re-exports for package roots (PEP 562).

A package root re-exports names from its private modules. Importing them all eagerly makes every
``import supervit.x`` pay for everything below it (``supervit ctl`` would load the supervisor's
SQLite store, psutil and the Prometheus client). A package built with :func:`lazy_exports` imports
a module the first time one of its names is used, and keeps the name, so later lookups are plain
attribute reads. Its ``if TYPE_CHECKING:`` block holds the same imports for type checkers, and
tests/test_import_graph.py checks that block and the table name the same names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, given ``{module: (name, …)}``.

    A name may also be a submodule of its module (``supervit.protocol``'s generated modules).
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module_name = where.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name)
        try:
            value = getattr(module, name)
        except AttributeError:
            value = importlib.import_module(f"{module_name}.{name}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
