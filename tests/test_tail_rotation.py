"""``tail`` and ``ship --follow`` stopped for real (SIGKILL, SIGTERM) while the log rotates: no line lost.

A writer process appends numbered lines and rotates while the follower is down; the follower is
started again with the same checkpoint and every number it printed, over both runs, is counted.
"""

from __future__ import annotations

import signal

import pytest

from tests.rotation import stopped_across_rotation

LINES, RATE, DOWN = 20_000, 8000.0, 1.0  # 8,000 lines are written while the follower is stopped

CASES = [
    ("tail", "rename", "named.log", signal.SIGKILL),
    ("tail", "rename", "named.log", signal.SIGTERM),
    ("tail", "copytruncate", "named.log", signal.SIGKILL),
    ("tail", "copytruncate", "named.log*", signal.SIGKILL),
    ("tail", "copytruncate", "named.log", signal.SIGTERM),
    ("ship", "rename", "named.log", signal.SIGKILL),
    ("ship", "copytruncate", "named.log*", signal.SIGTERM),
]


@pytest.mark.parametrize(
    ("via", "mode", "glob", "signum"), CASES, ids=[f"{v}-{m}-{g}-{s.name}" for v, m, g, s in CASES]
)
def test_follower_stopped_across_a_rotation_loses_no_line(tmp_path, via, mode, glob, signum):
    figures = stopped_across_rotation(tmp_path, via, mode, LINES, RATE, DOWN, signum, glob)
    assert figures.lost == 0, figures
