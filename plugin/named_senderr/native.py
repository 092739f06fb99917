"""The optional C speed-ups: used when they were built, never required.

setup.py builds each where a C compiler is at hand; each mirrors one Python
function byte for byte (tests/test_native_*.py compare the two on the corpus and
on generated input). ``NAMED_SENDERR_PURE_PYTHON=1`` runs the Python reference
alone, as a machine without a compiler would.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE_PYTHON_ENV = "NAMED_SENDERR_PURE_PYTHON"


def pure_python() -> bool:
    """``NAMED_SENDERR_PURE_PYTHON`` asks for the Python reference alone (any value but empty or 0)."""
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None: not built here, or the pure-Python path asked for."""
    if pure_python():
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
