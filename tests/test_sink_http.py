"""The shared client: secrets from the environment or files, auth headers, TLS checks on by default."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from named_senderr.errors import ConfigError
from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.http import HttpClient
from tests.faults import FaultServer, Reply, make_pki

OK = lambda request, n: Reply(200, b"{}")  # noqa: E731


def client(url: str, **settings) -> HttpClient:
    return HttpClient(sink_from_url(url, settings, "test", None))


def sent_headers(url: str, **settings) -> dict[str, str]:
    with FaultServer(OK) as server:
        http = client(url.replace("SERVER", server.url.removeprefix("http://")), **settings)
        http.request("GET", "/")
        http.close()
    return server.requests[0].headers


def test_basic_auth_password_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("TEST_ES_PASSWORD", "s3cret")
    headers = sent_headers("elasticsearch+http://SERVER/i?username=shipper&password_env=TEST_ES_PASSWORD")
    assert headers["authorization"] == "Basic c2hpcHBlcjpzM2NyZXQ="


def test_api_key_comes_from_a_file_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("a2V5OnNlY3JldA==\n")
    headers = sent_headers("elasticsearch+http://SERVER/i", auth={"api_key_file": str(tmp_path / "key")})
    assert headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="


def test_bearer_token_header(monkeypatch) -> None:
    monkeypatch.setenv("TEST_TOKEN", "tok")
    assert sent_headers("loki+http://SERVER?bearer_token_env=TEST_TOKEN")["authorization"] == "Bearer tok"


def test_no_auth_sends_no_authorization_header() -> None:
    assert "authorization" not in sent_headers("loki+http://SERVER")


def test_unset_variable_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("TEST_UNSET_PW", raising=False)
    with pytest.raises(ConfigError, match="password_env names TEST_UNSET_PW, which is not set"):
        client("elasticsearch+http://h:9200/i?username=u&password_env=TEST_UNSET_PW")


def test_unreadable_secret_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"password_file .*missing: No such file"):
        client("elasticsearch+http://h:9200/i", auth={"username": "u", "password_file": str(tmp_path / "missing")})


def test_secret_is_not_in_the_clients_repr(monkeypatch) -> None:
    monkeypatch.setenv("TEST_ES_PASSWORD", "s3cret-value")
    http = client("elasticsearch+http://h:9200/i?username=u&password_env=TEST_ES_PASSWORD")
    assert "s3cret-value" not in repr(http) + repr(vars(http))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_server(pki: Path, require_client_cert: bool = False) -> FaultServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    if require_client_cert:
        context.load_verify_locations(pki / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
    return FaultServer(OK, tls=context)


def https_get(server: FaultServer, **tls) -> object:
    url = "loki+" + server.url
    http = client(url, tls={k: str(v) if not isinstance(v, bool) else v for k, v in tls.items()})
    try:
        return http.request("GET", "/ready")
    finally:
        http.close()


def test_certificate_is_checked_by_default(pki: Path) -> None:
    with tls_server(pki) as server:
        reply = https_get(server)
    assert reply.status == 0 and "not trusted" in reply.fatal and "ca_file" in reply.fatal


def test_ca_file_makes_the_server_trusted(pki: Path) -> None:
    with tls_server(pki) as server:
        assert https_get(server, ca_file=pki / "ca.pem").status == 200


def test_verify_false_turns_the_check_off(pki: Path) -> None:
    with tls_server(pki) as server:
        assert https_get(server, verify=False).status == 200


def test_client_certificate_is_presented(pki: Path) -> None:
    with tls_server(pki, require_client_cert=True) as server:
        reply = https_get(server, ca_file=pki / "ca.pem", client_cert=pki / "client.pem", client_key=pki / "client.key")
    assert reply.status == 200


def test_server_requiring_a_client_certificate_refuses_a_client_without(pki: Path) -> None:
    with tls_server(pki, require_client_cert=True) as server:
        reply = https_get(server, ca_file=pki / "ca.pem")
    assert reply.status == 0


def test_missing_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; fix ca_file"):
        client("loki+https://h:3100", tls={"ca_file": str(tmp_path / "nope.pem")})
