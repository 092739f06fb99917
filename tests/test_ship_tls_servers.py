"""TLS, basic auth and tenants against a real VictoriaLogs that demands the first two, through its Loki push API.

The session's VictoriaLogs (conftest) speaks plain HTTP without auth; this module starts its own with a
second listener on HTTPS (``-tls``) and ``-httpAuth.*`` basic auth on both. Its open-source build has no
client-certificate check (``-mtls`` is not among its flags), so client certificates are tested against nginx
in test_tls.py, through the same HTTP client every sink uses.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import servers
from tests.faults import make_pki
from tests.test_ship_servers import REAL_LOGS, REAL_REASONS, logsql_counts, own_victorialogs, ship, unavailable

pytestmark = pytest.mark.servers
USER, PASSWORD = "shipper", "s3cret-for-victorialogs"
TENANT = "5:2"


@dataclass(frozen=True)
class SecureVictoriaLogs:
    plain: str  # http://127.0.0.1:PORT: /health and the test's own LogsQL queries (basic auth too)
    tls: str  # https://127.0.0.1:PORT: the sink's side


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        unavailable("openssl not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_victorialogs(pki: Path) -> Iterator[SecureVictoriaLogs]:
    """-tls, -tlsCertFile and -tlsKeyFile are per listener: empty for the first (plain), set for the second."""
    (pki / "password").write_text(PASSWORD)
    port = servers.free_port()
    flags = (f"-httpListenAddr=127.0.0.1:{port}", "-tls=,true", f"-tlsCertFile=,{pki / 'server.pem'}",
             f"-tlsKeyFile=,{pki / 'server.key'}", f"-httpAuth.username={USER}",
             f"-httpAuth.password=file://{pki / 'password'}")  # fmt: skip
    with own_victorialogs(*flags) as server:
        yield SecureVictoriaLogs(server.url, f"https://127.0.0.1:{port}")


def tls_sink(url: str, pki: Path, job: str, **extra: str) -> str:
    query = {"job": job, "tenant": TENANT, "ca_file": pki / "ca.pem", "username": USER,
             "password_env": "TEST_VL_PASSWORD", **extra}  # fmt: skip
    return f"loki+{url}/insert?" + "&".join(f"{k}={v}" for k, v in query.items() if v != "")


def test_ships_over_tls_with_basic_auth_to_a_tenant(
    secure_victorialogs: SecureVictoriaLogs, pki: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TEST_VL_PASSWORD", PASSWORD)
    job = f"tls-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, tls_sink(secure_victorialogs.tls, pki, job), *REAL_LOGS) == 0
    counts = logsql_counts(secure_victorialogs.plain, f'{{job="{job}"}}', REAL_REASONS, tenant=TENANT,
                           auth=(USER, PASSWORD))  # fmt: skip
    assert counts == REAL_REASONS


def test_wrong_password_stops_with_the_fix(
    secure_victorialogs: SecureVictoriaLogs, pki: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TEST_VL_PASSWORD", "wr0ng-never-shown")
    assert ship(tmp_path, tls_sink(secure_victorialogs.tls, pki, "x"), *REAL_LOGS) == 4
    err = capsys.readouterr().err
    assert "401: " in err and "check username/password_env" in err and "wr0ng-never-shown" not in err


def test_untrusted_server_certificate_stops_before_sending(
    secure_victorialogs: SecureVictoriaLogs, tmp_path: Path, capsys
) -> None:
    assert ship(tmp_path, f"loki+{secure_victorialogs.tls}/insert", *REAL_LOGS) == 4
    assert "TLS certificate not trusted" in capsys.readouterr().err
