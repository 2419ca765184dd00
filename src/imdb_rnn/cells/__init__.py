"""The recurrences a classifier can be built from, one registered module each.

Every module of this package is imported here, and registers its cells with `registry.register`: a
new recurrence is one new file in this folder plus one params.yaml section that names it
(docs/adding-an-architecture.md). `CELLS` maps each name to its `Cell` entry.
"""

import importlib
import pkgutil

from .registry import CELLS, Cell, check_cell, register  # noqa: F401

# PyTorch's own first, so that every list of the known cells starts with them
for _module in ["fused"] + sorted(
    m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("fused", "registry")
):
    importlib.import_module(f"{__name__}.{_module}")
