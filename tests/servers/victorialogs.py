"""VictoriaLogs (Apache-2.0) built once from its Go module through the Go proxy, started on loopback.

It is the real store behind the ``victorialogs+`` sink and, through its ``/insert/loki/api/v1/push``
endpoint, the real server the Loki push sink is tested against (Loki itself is AGPL and not used here).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import (
    STARTUP_TIMEOUT,
    Server,
    cache_dir,
    cache_lock,
    free_port,
    launch,
    new_data_dir,
    require_tool,
    run_logged,
)

VERSION = os.environ.get("NAMED_SENDERR_VICTORIALOGS_VERSION", "1.52.1").removeprefix("v")
PACKAGE = "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"


def go_env(gobin: Path) -> dict[str, str]:
    """Build env: never auto-download another toolchain, a static binary, installed into ``gobin``."""
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(gobin), "GOFLAGS": ""}


def prepare(version: str = VERSION) -> Path:
    """``go install`` victoria-logs once into ``<cache>/victorialogs-<version>/``; later calls return at once."""
    home = cache_dir() / f"victorialogs-{version}"
    binary = home / "victoria-logs"
    if binary.exists():
        return home
    go = require_tool("go")
    with cache_lock(f"victorialogs-{version}"):
        if binary.exists():
            return home
        staging = home / "bin.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        log = home / "build.log"
        log.write_text("")
        run_logged([go, "install", "-trimpath", f"{PACKAGE}@v{version}"], log, cwd=home, env=go_env(staging))
        (staging / "victoria-logs").rename(binary)
        shutil.rmtree(staging, ignore_errors=True)
    return home


def start(
    home: Path, version: str = VERSION, timeout: float = STARTUP_TIMEOUT, retention: str = "100y", flags: tuple = ()
) -> Server:
    """Start VictoriaLogs on a free loopback port with a fresh data dir.

    The retention is 100 years because the fixtures carry 2026 timestamps: the default 7 days would drop
    them with nothing but a warning in the server's own log (a test of that passes a shorter one).
    ``flags`` are more of its command-line flags, e.g. ``-httpAuth.username=...``.
    """
    data = new_data_dir("victorialogs")
    port = free_port()
    cmd = [
        str(home / "victoria-logs"),
        f"-storageDataPath={data / 'storage'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-retentionPeriod={retention}",
        "-loggerLevel=WARN",
        *flags,
    ]
    return launch("victorialogs", version, cmd, port=port, health_path="/health", data_dir=data, timeout=timeout)
