"""Elasticsearch 8.x and OpenSearch 2.x from their ``integ-test-zip`` distributions on Maven Central.

These zips are small (~100 MB, no bundled JDK, no extra plugins) and fetched with plain ``mvn``, so CI
needs no Docker. They run on the machine's Java 17 (ES 9 and OpenSearch 3 would need Java 21).
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import (
    STARTUP_TIMEOUT,
    Server,
    ServerError,
    cache_dir,
    cache_lock,
    free_port,
    launch,
    new_data_dir,
    require_tool,
    run_logged,
)

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Distribution:
    """What differs between Elasticsearch and OpenSearch: coordinates, script names and settings."""

    name: str
    group: str
    version: str
    env_prefix: str  # ES_ / OPENSEARCH_ for *_JAVA_HOME, *_JAVA_OPTS, *_PATH_CONF
    settings: dict[str, str]

    @property
    def artifact(self) -> str:
        return f"{self.group}:{self.name}:{self.version}:zip"


# Newest 8.x / 2.x on Maven Central when this was written; override with the env vars to try others.
DISTRIBUTIONS = {
    "elasticsearch": Distribution(
        name="elasticsearch",
        group="org.elasticsearch.distribution.integ-test-zip",
        version=os.environ.get("NAMED_SENDERR_ES_VERSION", "8.19.21"),
        env_prefix="ES_",
        settings={"xpack.security.enabled": "false"},
    ),
    "opensearch": Distribution(
        name="opensearch",
        group="org.opensearch.distribution.integ-test-zip",
        version=os.environ.get("NAMED_SENDERR_OS_VERSION", "2.19.6"),
        env_prefix="OPENSEARCH_",
        settings={},  # the integ-test zip has no security plugin, so nothing to disable
    ),
}


def unzip(archive: Path, dest: Path) -> None:
    """Extract keeping the Unix permission bits (``zipfile`` drops them, and ``bin/`` must be executable)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode | stat.S_IRUSR)


def prepare(dist: Distribution) -> Path:
    """Fetch the zip with ``mvn dependency:copy`` and unpack it into ``<cache>/<name>-<version>/`` once."""
    home = cache_dir() / f"{dist.name}-{dist.version}"
    if (home / "bin" / dist.name).exists():
        return home
    mvn = require_tool("mvn")
    with cache_lock(f"{dist.name}-{dist.version}"):
        if (home / "bin" / dist.name).exists():
            return home
        downloads = cache_dir() / "downloads"
        downloads.mkdir(exist_ok=True)
        log = downloads / f"{dist.name}-{dist.version}.log"
        archive = downloads / f"{dist.name}-{dist.version}.zip"
        if not archive.exists():
            log.write_text("")
            goal = f"{DEPENDENCY_PLUGIN}:copy"
            run_logged(
                [mvn, "-B", "-ntp", goal, f"-Dartifact={dist.artifact}", f"-DoutputDirectory={downloads}"],
                log,
                cwd=downloads,
            )
        staging = cache_dir() / f".{dist.name}-{dist.version}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        unzip(archive, staging)
        shutil.rmtree(home, ignore_errors=True)
        (staging / f"{dist.name}-{dist.version}").rename(home)
        shutil.rmtree(staging)
        archive.unlink()  # ~100 MB; Maven's local repository keeps a copy anyway
    return home


def java_home() -> str:
    """JDK for the server: ``$JAVA_HOME`` if set, else the one behind ``java`` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    return str(Path(require_tool("java")).resolve().parent.parent)


def drop_root() -> list[str]:
    """Command prefix that hides root: ES and OpenSearch refuse to start as uid 0 (common in CI containers).

    ``unshare --user`` maps an unprivileged uid inside a user namespace onto our real uid, so the JVM
    sees uid 1000 but keeps access to the root-owned cache and data dirs. No-op when not root.
    """
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServerError("Elasticsearch/OpenSearch refuse to run as root and util-linux 'unshare' is missing")
    return [unshare, "--user", "--map-user=1000", "--map-group=1000"]


def start(dist: Distribution, home: Path, timeout: float = STARTUP_TIMEOUT) -> Server:
    """Start a single node on a free loopback port with a private config and data dir.

    The config dir is copied per session because the server writes its keystore there, and two
    sessions sharing the cached install must not race on it.
    """
    java = java_home()
    if not Path(java, "bin", "java").exists():
        raise ServerError(f"no java in {java}")
    data = new_data_dir(dist.name)
    conf = data / "config"
    shutil.copytree(home / "config", conf)
    tmp = data / "tmp"
    tmp.mkdir()
    port = free_port()
    settings = {
        "cluster.name": f"named-senderr-{port}",
        "node.name": "node-1",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": str(port),
        "transport.port": str(free_port()),
        "path.data": str(data / "data"),
        "path.logs": str(data / "logs"),
        # CI disks are often >90 % full; do not let the watermark turn the cluster red.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        **dist.settings,
    }
    (conf / f"{dist.name}.yml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    p = dist.env_prefix
    env = {
        **os.environ,
        f"{p}JAVA_HOME": java,
        f"{p}JAVA_OPTS": "-Xms512m -Xmx512m",
        f"{p}PATH_CONF": str(conf),
        f"{p}TMPDIR": str(tmp),
        # ES's CLI JVM probes JVM flags in a temp dir it never removes; keep that out of /tmp.
        "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={tmp}",
    }
    cmd = [*drop_root(), str(home / "bin" / dist.name)]
    health = "/_cluster/health?wait_for_status=yellow&timeout=5s"
    return launch(dist.name, dist.version, cmd, port=port, health_path=health, data_dir=data, env=env, timeout=timeout)
