"""TLS and basic auth against nginx (Debian's package) in front of the real Elasticsearch.

The test makes its own CA, server and client certificates (openssl), and a second CA that
signed nothing here. nginx terminates TLS with basic auth on one port and demands a client
certificate on another; both proxy to the session's Elasticsearch. Verification is on unless a
sink says ``verify = false``; secrets must appear in no output and no file the run writes.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from named_senderr.cli import main
from tests import servers
from tests.faults import make_pki
from tests.test_durability import es_count
from tests.test_ship_servers import REAL_LOGS, REAL_REASONS

pytestmark = pytest.mark.servers
PASSWORD = "s3cret-Pa55-for-nginx"
WRONG = "wr0ng-Pa55-never-shown"
USER = "shipper"


def _unavailable(reason: str) -> None:
    """Skip locally, fail under CI=true: CI must not go green without the TLS tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Proxy:
    basic: str  # https://127.0.0.1:PORT: TLS + basic auth
    mutual: str  # https://127.0.0.1:PORT: TLS + a client certificate signed by the test CA
    pki: Path
    other_ca: Path


CONFIG = """\
{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  client_max_body_size 100m;
  ssl_certificate {pki}/server.pem;
  ssl_certificate_key {pki}/server.key;
  server {{
    listen 127.0.0.1:{basic} ssl;
    auth_basic "elasticsearch";
    auth_basic_user_file {dir}/htpasswd;
    location / {{ proxy_pass {upstream}; proxy_set_header Authorization ""; }}
  }}
  server {{
    listen 127.0.0.1:{mutual} ssl;
    ssl_client_certificate {pki}/ca.pem;
    ssl_verify_client on;
    location / {{ proxy_pass {upstream}; }}
  }}
}}
"""


def _wait_for_tls(port: int, context: ssl.SSLContext, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}: {servers.tail(log)}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nginx not listening on {port} after 20 s: {servers.tail(log)}")


@pytest.fixture(scope="module")
def proxy(elasticsearch_url: str, tmp_path_factory) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        _unavailable(
            "nginx not installed (apt-get install nginx-light, or tests/setup-tools as root); the TLS proxy tests need it"
        )
    if shutil.which("openssl") is None:
        _unavailable("openssl not installed; the TLS tests make their certificates with it")
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    other = make_pki(tmp_path_factory.mktemp("other-pki"))
    directory = tmp_path_factory.mktemp("nginx")
    (directory / "htpasswd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    basic, mutual = servers.free_port(), servers.free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = CONFIG.format(user=user, dir=directory, pki=pki, basic=basic, mutual=mutual, upstream=elasticsearch_url)
    (directory / "nginx.conf").write_text(config)
    log = directory / "stderr.log"
    with log.open("ab") as out:
        process = subprocess.Popen([nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"),
                                    "-e", str(directory / "error.log")], stdout=out, stderr=out,
                                   start_new_session=True)  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        _wait_for_tls(basic, context, process, log)
        yield Proxy(f"https://127.0.0.1:{basic}", f"https://127.0.0.1:{mutual}", pki, other / "ca.pem")
    finally:
        process.terminate()
        process.wait(10)


def ship(tmp_path: Path, url: str, capfd) -> tuple[int, str]:
    """Ship the real logs; the exit status and everything written to stdout, stderr and the dead letter."""
    dead = tmp_path / "dead.ndjson"
    args = ["ship", *REAL_LOGS, "--to", url, "--timezone", "UTC", "--dead-letter", str(dead), "--no-progress",
            "--queue-dir", str(tmp_path / "queue")]  # fmt: skip
    status = main(args)
    out, err = capfd.readouterr()
    files = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    return status, out + err + files


def sink(proxy: Proxy, base: str, **query: str) -> tuple[str, str]:
    index = f"named-senderr-{uuid.uuid4().hex[:8]}"
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return f"elasticsearch+{base}/{index}" + (f"?{text}" if text else ""), index


@pytest.fixture
def password(monkeypatch) -> str:
    monkeypatch.setenv("ES_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("ES_WRONG_PASSWORD", WRONG)
    return "ES_TEST_PASSWORD"


def test_verified_tls_with_basic_auth_stores_every_event_and_prints_no_secret(
    proxy: Proxy, elasticsearch_url: str, password: str, tmp_path: Path, capfd
) -> None:
    url, index = sink(proxy, proxy.basic, ca_file=str(proxy.pki / "ca.pem"), username=USER, password_env=password)
    status, output = ship(tmp_path, url, capfd)
    assert status == 0 and es_count(elasticsearch_url, index) == sum(REAL_REASONS.values())
    assert PASSWORD not in output


def test_verification_is_on_by_default_so_an_unknown_ca_is_refused(
    proxy: Proxy, elasticsearch_url: str, password: str, tmp_path: Path, capfd
) -> None:
    url, index = sink(proxy, proxy.basic, username=USER, password_env=password)
    status, output = ship(tmp_path, url, capfd)
    assert status == 4 and "TLS certificate not trusted" in output and es_count(elasticsearch_url, index) == 0
    assert PASSWORD not in output


def test_a_wrong_ca_file_is_refused(proxy: Proxy, elasticsearch_url: str, password: str, tmp_path: Path, capfd) -> None:
    url, index = sink(proxy, proxy.basic, ca_file=str(proxy.other_ca), username=USER, password_env=password)
    status, output = ship(tmp_path, url, capfd)
    assert status == 4 and "TLS certificate not trusted" in output and es_count(elasticsearch_url, index) == 0


def test_a_wrong_password_is_refused_and_never_shown(
    proxy: Proxy, elasticsearch_url: str, password: str, tmp_path: Path, capfd
) -> None:
    url, index = sink(proxy, proxy.basic, ca_file=str(proxy.pki / "ca.pem"), username=USER,
                      password_env="ES_WRONG_PASSWORD")  # fmt: skip
    status, output = ship(tmp_path, url, capfd)
    assert status == 4 and "401" in output and "password_env" in output
    assert WRONG not in output and PASSWORD not in output and es_count(elasticsearch_url, index) == 0


def test_a_client_certificate_is_accepted_by_a_server_that_demands_one(
    proxy: Proxy, elasticsearch_url: str, tmp_path: Path, capfd
) -> None:
    pki = proxy.pki
    url, index = sink(proxy, proxy.mutual, ca_file=str(pki / "ca.pem"), client_cert=str(pki / "client.pem"),
                      client_key=str(pki / "client.key"))  # fmt: skip
    status, _ = ship(tmp_path, url, capfd)
    assert status == 0 and es_count(elasticsearch_url, index) == sum(REAL_REASONS.values())


def test_no_client_certificate_is_refused_by_a_server_that_demands_one(
    proxy: Proxy, elasticsearch_url: str, tmp_path: Path, capfd
) -> None:
    """nginx answers 400 "No required SSL certificate was sent": a failed sink (exit 4), nothing dead-lettered."""
    url, index = sink(proxy, proxy.mutual, ca_file=str(proxy.pki / "ca.pem"))
    status, output = ship(tmp_path, url, capfd)
    assert status == 4 and "No required SSL certificate was sent" in output and es_count(elasticsearch_url, index) == 0
