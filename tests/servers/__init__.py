"""Real Elasticsearch, OpenSearch, VictoriaLogs and Kafka servers for integration tests.

The servers are downloaded (ES/OS integ-test zips and Kafka's jars from Maven Central) or built (VictoriaLogs
from its Go module through the Go proxy) once into a cache outside the repository, then started per test session
on a free loopback port with a throw-away data directory. ``python -m tests.servers`` drives the same
code from the command line (``prepare`` for CI, ``run`` for manual poking).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SERVER_NAMES",
    "Server",
    "ServerError",
    "ToolMissing",
    "cache_dir",
    "free_port",
    "prepare",
    "start",
]

SERVER_NAMES = ("elasticsearch", "opensearch", "victorialogs", "kafka")
STARTUP_TIMEOUT = float(os.environ.get("NAMED_SENDERR_SERVER_TIMEOUT", "180"))


class ServerError(RuntimeError):
    """Preparing or starting a server failed; the message carries the relevant log tail."""


class ToolMissing(ServerError):
    """A tool needed to prepare or run a server (java, mvn, go) is not installed."""


def cache_dir() -> Path:
    """Cache root, outside the repo so downloads survive ``git clean`` and are shared by checkouts."""
    root = os.environ.get("NAMED_SENDERR_SERVER_CACHE") or "~/.cache/named-senderr/servers"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Exclusive per-server lock so parallel pytest/CI processes don't download or build twice."""
    with (cache_dir() / f".{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def require_tool(tool: str) -> str:
    """Path of ``tool`` on PATH, or :class:`ToolMissing` so callers can skip rather than crash."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool!r} not found on PATH")
    return path


def run_logged(cmd: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a preparation step, appending its output to ``log``; raise with the log tail on failure."""
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        raise ServerError(f"{cmd[0]} exited with {rc}; see {log}\n{tail(log)}")


def tail(path: Path, lines: int = 60) -> str:
    """Last lines of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0 and let the kernel pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process; ``stop()`` is idempotent and safe to call from finalizers."""

    name: str
    version: str
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    _cleanup: list[Callable[[], None]] = field(default_factory=list)
    relaunch: Callable[[], subprocess.Popen[bytes]] | None = None  # the same command, port and data dir
    health_url: str = ""
    probe: Callable[[float], bool] | None = None  # health check for servers that do not speak HTTP
    endpoints: dict[str, str] = field(default_factory=dict)  # more addresses it listens on, by name

    def healthy(self, timeout: float = 5.0) -> bool:
        """One health check: ``probe`` when the server has one, else a 2xx from ``health_url``."""
        if self.probe is not None:
            return self.probe(timeout)
        return http_ok(self.health_url, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, not a shutdown); data dir and port stay for ``resume()``."""
        signal_group(self.process, signal.SIGKILL)
        self.process.wait(30)

    def halt(self, timeout: float = 30.0) -> None:
        """Stop the process but keep its data dir and port, for an outage that ``resume()`` ends."""
        if self.process.poll() is None:
            signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(self.process, signal.SIGKILL)
                self.process.wait(10)
        signal_group(self.process, signal.SIGKILL)  # stragglers whose parent already exited

    def resume(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the halted server again on the same port and data; return once it is healthy."""
        assert self.relaunch is not None
        self.process = self.relaunch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode} on restart\n{tail(self.log)}")
            if self.healthy(timeout=5.0):
                return
            time.sleep(0.5)
        raise ServerError(f"{self.name} not healthy again after {timeout:.0f}s\n{tail(self.log)}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after ``timeout``, then run cleanups.

        The whole group is signalled because the ES/OS launchers are a CLI JVM plus a server JVM.
        """
        self.halt(timeout)
        while self._cleanup:
            self._cleanup.pop()()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process group started by :func:`launch` (its leader's pid is the group id)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def http_ok(url: str, timeout: float = 5.0) -> bool:
    """True when ``url`` answers 2xx; any connection problem just means "not yet"."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def launch(
    name: str,
    version: str,
    cmd: list[str],
    *,
    port: int,
    health_path: str,
    data_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT,
    probe: Callable[[float], bool] | None = None,
    url: str = "",
) -> Server:
    """Start ``cmd`` with output in ``data_dir/server.log`` and poll ``health_path`` (or ``probe``) until healthy.

    ``url`` is what callers connect to; it defaults to ``http://127.0.0.1:PORT``.

    Startup failures (process exit or timeout) stop the process and raise with the log tail, so a
    broken server shows its own error in the pytest output instead of a bare connection refused.
    """
    log = data_dir / "server.log"

    def spawn() -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            return subprocess.Popen(
                cmd,
                cwd=data_dir,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    process = spawn()
    base = f"http://127.0.0.1:{port}"
    server = Server(
        name, version, url or base, process, data_dir, log, relaunch=spawn, health_url=base + health_path, probe=probe
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise ServerError(f"{name} {version} exited with {process.returncode} during startup ({log})\n{tail(log)}")
        if server.healthy(timeout=min(10.0, max(1.0, deadline - time.monotonic()))):
            return server
        time.sleep(0.5)
    server.stop()
    raise ServerError(
        f"{name} {version} not healthy at {server.url}{health_path} after {timeout:.0f}s ({log})\n{tail(log)}"
    )


def new_data_dir(name: str) -> Path:
    """Fresh per-session data directory (tmp), so every session starts from an empty server."""
    return Path(tempfile.mkdtemp(prefix=f"named-senderr-{name}-"))


def prepare(name: str) -> Path:
    """Download or build ``name`` into the cache if needed; return its install directory."""
    from . import java, kafka, victorialogs

    if name == "victorialogs":
        return victorialogs.prepare()
    if name == "kafka":
        return kafka.prepare()
    if name in ("elasticsearch", "opensearch"):
        return java.prepare(java.DISTRIBUTIONS[name])
    raise ValueError(f"unknown server {name!r}; expected one of {SERVER_NAMES}")


def start(name: str, *, keep_data: bool = False) -> Server:
    """Prepare (if needed) and start ``name`` on a free port; the caller must ``stop()`` it."""
    from . import java, kafka, victorialogs

    if name == "victorialogs":
        server = victorialogs.start(prepare(name))
    elif name == "kafka":
        java.java_home()  # no JDK: fail before downloading anything
        server = kafka.start(prepare(name))
    elif name in ("elasticsearch", "opensearch"):
        java.java_home()  # no JDK: fail before downloading anything
        server = java.start(java.DISTRIBUTIONS[name], prepare(name))
    else:
        raise ValueError(f"unknown server {name!r}; expected one of {SERVER_NAMES}")
    if not keep_data:
        server._cleanup.append(lambda: shutil.rmtree(server.data_dir, ignore_errors=True))
    atexit.register(server.stop)  # a crashed or interrupted caller must not leave JVMs behind
    return server
