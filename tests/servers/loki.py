"""Loki built from its Go module through the Go proxy, and started with a minimal single-binary config.

``go install github.com/grafana/loki/v3/cmd/loki@vX`` is refused because Loki's go.mod has replace
directives, and the module zip lacks the nested ``pkg/push`` module. So we generate a wrapper module
in the cache: it requires Loki, copies Loki's replace lines (pointing ``pkg/push`` at its published
version) and Loki's ``cmd/loki/*.go`` as its own ``main`` package, then ``go build``s that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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

#: Newest Loki 3.x on the Go proxy that builds with Go 1.26 (3.7.8 declares ``go 1.26.5``).
VERSION = os.environ.get("NAMED_SENDERR_LOKI_VERSION", "3.7.8").removeprefix("v")
MODULE = "github.com/grafana/loki/v3"
PUSH_MODULE = "github.com/grafana/loki/pkg/push"


def go_env() -> dict[str, str]:
    """Build env: never auto-download another toolchain, static binary, modules resolved from go.mod."""
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}


def go_version(go: str) -> tuple[int, ...]:
    """Local Go version as a tuple, e.g. (1, 26, 8), to compare with Loki's ``go`` directive."""
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True, env=go_env()).stdout
    return tuple(int(p) for p in re.findall(r"\d+", out)[:3])


def wrapper_go_mod(loki_mod: dict, version: str) -> str:
    """go.mod for the wrapper: Loki's go directive, Loki + pkg/push required, Loki's replaces copied."""
    push_version = next(r["Version"] for r in loki_mod["Require"] if r["Path"] == PUSH_MODULE)
    lines = [
        "module named-senderr.test/lokiwrapper",
        "",
        f"go {loki_mod['Go']}",
        "",
        f"require {MODULE} v{version}",
        f"require {PUSH_MODULE} {push_version}",
        "",
    ]
    for rep in loki_mod.get("Replace") or []:
        old = rep["Old"]["Path"] + (f" {rep['Old']['Version']}" if rep["Old"].get("Version") else "")
        if rep["Old"]["Path"] == PUSH_MODULE:
            new = f"{PUSH_MODULE} {push_version}"  # the module zip has no ./pkg/push; use the published one
        else:
            new = rep["New"]["Path"] + (f" {rep['New']['Version']}" if rep["New"].get("Version") else "")
        lines.append(f"replace {old} => {new}")
    return "\n".join(lines) + "\n"


def prepare(version: str = VERSION) -> Path:
    """Build ``loki`` once into ``<cache>/loki-<version>/``; later calls return at once."""
    home = cache_dir() / f"loki-{version}"
    binary = home / "loki"
    if binary.exists():
        return home
    go = require_tool("go")
    with cache_lock(f"loki-{version}"):
        if binary.exists():
            return home
        build = home / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        log = home / "build.log"
        log.write_text("")
        env = go_env()
        dl = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@v{version}"], capture_output=True, text=True, env=env
        )
        if dl.returncode != 0:
            raise ServerError(f"go mod download {MODULE}@v{version} failed:\n{dl.stdout}{dl.stderr}")
        info = json.loads(dl.stdout)
        loki_mod = json.loads(
            subprocess.run(
                [go, "mod", "edit", "-json", info["GoMod"]], capture_output=True, text=True, check=True
            ).stdout
        )
        need = tuple(int(p) for p in re.findall(r"\d+", loki_mod["Go"])[:3])
        if go_version(go) < need:
            raise ServerError(
                f"Loki {version} needs Go >= {loki_mod['Go']}; set NAMED_SENDERR_LOKI_VERSION to an older 3.x"
            )
        (build / "go.mod").write_text(wrapper_go_mod(loki_mod, version))
        shutil.copyfile(Path(info["Dir"]) / "go.sum", build / "go.sum")
        for src in (Path(info["Dir"]) / "cmd" / "loki").glob("*.go"):
            if not src.name.endswith("_test.go"):
                shutil.copyfile(src, build / src.name)
        run_logged([go, "mod", "tidy"], log, cwd=build, env=env)
        ldflags = f"-s -w -X {MODULE}/pkg/util/build.Version={version} -X {MODULE}/pkg/util/build.Branch=release"
        tmp = home / "loki.tmp"
        run_logged(
            [go, "build", "-trimpath", "-tags", "netgo", "-ldflags", ldflags, "-o", str(tmp), "."],
            log,
            cwd=build,
            env=env,
        )
        tmp.rename(binary)
    return home


CONFIG = """\
auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {port}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {grpc_port}
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: {data}
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
  storage:
    filesystem:
      chunks_directory: {data}/chunks
      rules_directory: {data}/rules
schema_config:
  configs:
    - from: 2020-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
  # Fixtures carry old (2026) timestamps. With a filesystem store Loki only asks the ingester about the
  # last ~2h41m by default, so older pushes would be invisible until flushed; -1 = no limit.
  query_store_max_look_back_period: -1
frontend_worker:
  dns_lookup_duration: 500ms
frontend:
  scheduler_dns_lookup_period: 500ms  # /ready waits until the frontend finds the scheduler (10s poll by default)
limits_config:
  allow_structured_metadata: true
  reject_old_samples: false
  unordered_writes: true
  max_query_length: 0
analytics:
  reporting_enabled: false
"""


def start(home: Path, version: str = VERSION, timeout: float = STARTUP_TIMEOUT) -> Server:
    """Start Loki on a free loopback port with a fresh data dir; healthy once ``/ready`` says so."""
    data = new_data_dir("loki")
    port, grpc_port = free_port(), free_port()
    config = data / "loki.yaml"
    config.write_text(CONFIG.format(port=port, grpc_port=grpc_port, data=data))
    cmd = [str(home / "loki"), f"-config.file={config}"]
    return launch("loki", version, cmd, port=port, health_path="/ready", data_dir=data, timeout=timeout)
