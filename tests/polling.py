"""Every wait in the tests is a bounded poll: this one."""

from __future__ import annotations

import time
from collections.abc import Callable

WAIT = 15.0


def wait_until(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll ``predicate`` every 10 ms; fail the test if it stays false for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
