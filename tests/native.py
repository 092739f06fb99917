"""The optional C speed-ups in tests: the built module, or a skip (a failure under CI=true, whose machine builds them)."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from named_senderr import native


def compiled(name: str) -> ModuleType:
    """The compiled module ``name``; skipped where it was not built, or where the pure-Python path is asked for."""
    if native.pure_python():
        pytest.skip(f"{native.PURE_PYTHON_ENV} is set: the pure-Python reference runs alone")
    module = native.load(name)
    if module is None:
        message = f"{name} is not built here (pip install needs a C compiler for it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return module
