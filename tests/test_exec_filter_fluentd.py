"""The real Fluentd: in_tail -> out_exec_filter running fluentd-filter -> stdout (skipped when fluentd is absent).

Debian bookworm packages no Fluentd (no ruby-fluentd); install the fluentd gem or
fluent-package, or set FLUENTD=/path/to/fluentd, to run this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.test_exec_filter import SAMPLE, wait_until

FLUENTD = os.environ.get("FLUENTD") or shutil.which("fluentd")
pytestmark = pytest.mark.skipif(
    FLUENTD is None,
    reason="fluentd is not installed (no Debian bookworm package); install it or set FLUENTD=/path/to/fluentd",
)

CONFIG = """\
<source>
  @type tail
  path {log}
  pos_file {tmp}/named.log.pos
  read_from_head true
  tag named.log
  <parse>
    @type none
  </parse>
</source>
<match named.log>
  @type exec_filter
  command {python} -m named_senderr fluentd-filter --key message --log-file {tmp}/filter.log
  tag named.send_error
  child_respawn -1
  <format>
    @type msgpack
  </format>
  <parse>
    @type msgpack
  </parse>
  <buffer>
    flush_interval 0.5s
  </buffer>
</match>
<match named.send_error>
  @type stdout
</match>
"""


def test_fluentd_exec_filter_turns_tailed_lines_into_events(tmp_path: Path):
    log = tmp_path / "named.log"
    shutil.copy(SAMPLE, log)
    config = tmp_path / "fluent.conf"
    config.write_text(CONFIG.format(log=log, tmp=tmp_path, python=sys.executable))
    assert FLUENTD is not None
    proc = subprocess.Popen(
        [FLUENTD, "-c", str(config), "--no-supervisor"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    events: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"named.send_error: " in line:
                events.append(line.decode())

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: len(events) >= 39, timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert len(events) == 39
    assert '"reason":"would_block"' in events[0]
    assert "stopped (" in (tmp_path / "filter.log").read_text()  # the child exited cleanly on Fluentd's shutdown
