"""TLS, client certificates and tenants against a real Loki that demands all three.

The session's Loki (conftest) speaks plain HTTP without tenants; this module
starts its own from the same cached binary, with ``http_tls_config`` requiring
a client certificate and ``auth_enabled: true`` requiring X-Scope-OrgID.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import servers
from tests.faults import make_pki
from tests.servers import loki as loki_server
from tests.test_ship_servers import QUERY_TIME, REAL_LOGS, REAL_REASONS, ship

pytestmark = pytest.mark.servers
TENANT = "dns-team"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        _unavailable("openssl not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "client.pem", pki / "client.key")
    return context


@pytest.fixture(scope="module")
def loki_tls_url(pki: Path) -> Iterator[str]:
    """https://127.0.0.1:PORT of a Loki requiring a client certificate and a tenant."""
    try:
        home = servers.prepare("loki")
    except servers.ServerError as exc:
        _unavailable(f"loki unavailable: {exc}")
    data = servers.new_data_dir("loki-tls")
    port, grpc_port = servers.free_port(), servers.free_port()
    tls = (
        f"  http_tls_config:\n    cert_file: {pki / 'server.pem'}\n    key_file: {pki / 'server.key'}\n"
        f"    client_auth_type: RequireAndVerifyClientCert\n    client_ca_file: {pki / 'ca.pem'}\n"
    )
    config = loki_server.CONFIG.format(port=port, grpc_port=grpc_port, data=data)
    assert "auth_enabled: false\n" in config and f"http_listen_port: {port}\n" in config
    config = config.replace("auth_enabled: false", "auth_enabled: true")
    config = config.replace(f"http_listen_port: {port}\n", f"http_listen_port: {port}\n{tls}")
    (data / "loki.yaml").write_text(config)
    log = (data / "server.log").open("ab")
    process = subprocess.Popen([str(home / "loki"), f"-config.file={data / 'loki.yaml'}"], stdout=log, stderr=log,
                               start_new_session=True)  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + servers.STARTUP_TIMEOUT
        with httpx.Client(verify=client_context(pki), timeout=5) as probe:
            while True:
                try:
                    if probe.get(f"{url}/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"TLS Loki did not become ready:\n{servers.tail(data / 'server.log')}")
                time.sleep(0.5)
        yield url
    finally:
        servers.signal_group(process, servers.signal.SIGKILL)
        process.wait(30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def tls_query(pki: Path, url: str, job: str) -> dict[str, int]:
    query = f'sum by (reason) (count_over_time({{job="{job}"}}[3h]))'
    with httpx.Client(verify=client_context(pki), headers={"X-Scope-OrgID": TENANT}) as client:
        reply = client.get(f"{url}/loki/api/v1/query", params={"query": query, "time": QUERY_TIME})
    reply.raise_for_status()
    return {r["metric"]["reason"]: int(r["value"][1]) for r in reply.json()["data"]["result"]}


def tls_sink(url: str, pki: Path, job: str, **extra: str) -> str:
    query = {"job": job, "tenant": TENANT, "ca_file": pki / "ca.pem", "client_cert": pki / "client.pem",
             "client_key": pki / "client.key", **extra}  # fmt: skip
    return f"loki+{url}?" + "&".join(f"{k}={v}" for k, v in query.items() if v != "")


def test_ships_over_tls_with_a_client_certificate_to_a_tenant(loki_tls_url: str, pki: Path, tmp_path: Path) -> None:
    job = f"tls-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, tls_sink(loki_tls_url, pki, job), *REAL_LOGS) == 0
    assert tls_query(pki, loki_tls_url, job) == REAL_REASONS


def test_missing_tenant_stops_with_the_fix(loki_tls_url: str, pki: Path, tmp_path: Path, capsys) -> None:
    assert ship(tmp_path, tls_sink(loki_tls_url, pki, "x", tenant=""), *REAL_LOGS) == 4
    assert "set tenant" in capsys.readouterr().err


def test_untrusted_server_certificate_stops_before_sending(loki_tls_url: str, tmp_path: Path, capsys) -> None:
    assert ship(tmp_path, f"loki+{loki_tls_url}", *REAL_LOGS) == 4
    assert "TLS certificate not trusted" in capsys.readouterr().err


def test_server_refuses_a_client_without_certificate(loki_tls_url: str, pki: Path, tmp_path: Path) -> None:
    url = tls_sink(loki_tls_url, pki, "x", client_cert="", client_key="")
    assert ship(tmp_path, url, *REAL_LOGS) == 4
