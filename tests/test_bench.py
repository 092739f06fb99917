"""The bench script runs end to end on tiny inputs (no timing is asserted: a loaded machine would make that flaky)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_anchor_bench_prints_every_row_on_tiny_inputs(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "anchors.py"), "--lines", "1000", "--errors-lines", "2000"]
    result = subprocess.run(
        [*command, "--runs", "1", "--skip", "ship", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for work in ("all send errors → ECS NDJSON", "mixed 1,000 lines → ECS NDJSON", "serve,", "fluentd-filter,"):
        assert work in result.stdout
    assert "grep -cF" in result.stdout
