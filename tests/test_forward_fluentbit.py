"""The real Fluent Bit: tail -> forward output -> our Forward server (skipped when fluent-bit is absent).

Debian bookworm packages no fluent-bit; install Fluent Bit's own package (or put
the binary on PATH, or set FLUENT_BIT) to run these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC
from pathlib import Path

import pytest

from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from tests.test_forward_server import SAMPLE, SAMPLE_EVENTS, RunningServer, wait_until

FLUENT_BIT = (
    os.environ.get("FLUENT_BIT") or shutil.which("fluent-bit") or shutil.which("/opt/fluent-bit/bin/fluent-bit")
)
pytestmark = pytest.mark.skipif(
    FLUENT_BIT is None,
    reason="fluent-bit is not installed (no Debian bookworm package); install Fluent Bit or set FLUENT_BIT=/path/to/fluent-bit",
)

CONFIG = """\
[SERVICE]
    Flush        0.2
    Log_Level    info
[INPUT]
    Name           tail
    Path           {log}
    Read_from_Head true
    Tag            named.log
[OUTPUT]
    Name                 forward
    Match                *
    Host                 127.0.0.1
    Port                 {port}
    Require_ack_response true
{extra}"""


@pytest.mark.parametrize(
    ("extra", "settings"),
    [
        pytest.param("", {}, id="forward-mode"),
        pytest.param("    Compress gzip\n", {}, id="gzip"),
        pytest.param("    Shared_Key s3cret\n    Self_Hostname flb\n", {"shared_key": "s3cret"}, id="shared-key"),
    ],
)
def test_fluent_bit_tail_to_our_server(tmp_path: Path, extra: str, settings: dict):
    server = RunningServer(NamedLineParser(TimestampNormalizer(UTC)), **settings)
    log = tmp_path / "named.log"
    shutil.copy(SAMPLE, log)
    config = tmp_path / "fluent-bit.conf"
    config.write_text(CONFIG.format(log=log, port=server.port, extra=extra))
    assert FLUENT_BIT is not None
    proc = subprocess.Popen([FLUENT_BIT, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(server.output.events) >= SAMPLE_EVENTS, timeout=30)
        wait_until(lambda: server.stats.acks >= 1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.stop()
    assert len(server.output.events) == SAMPLE_EVENTS
    assert server.stats.malformed == 0 and server.stats.handshake_failures == 0
