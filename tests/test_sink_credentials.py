"""Secrets a server echoes back: redacted in every form before anything is printed, raised or stored.

The fault server (tests/faults.py ``echoing``) quotes the request's headers in
its 401, 400 and 500 bodies and in every bulk item's reason, as sent,
URL-encoded and with a Basic header decoded. The commands run as a user runs
them; the test lists on its own the forms a leak could take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from fluent.sender import FluentSender

from named_senderr.settings.ship import AuthConfig
from named_senderr.sinks.credentials import REDACTED, Credentials, read_credentials
from tests.faults import FaultServer, echoing
from tests.polling import wait_until
from tests.test_forward_serve_cli import LINE, serve  # noqa: F401 - serve is a fixture

USER = "shipper"
PASSWORD = 'Sup3r"Secret/+ö 123'
API_KEY_PAIR = "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
BEARER = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0/+token="
BASIC_TOKEN = "c2hpcHBlcjpTdXAzciJTZWNyZXQvK8O2IDEyMw=="
ENV = "TEST_ECHOED_SECRET"
AUTH = {  # how the sink URL names the secret, the secret, the header it makes, and its plain forms
    "basic": (f"username={USER}&password_env={ENV}", PASSWORD, f"Basic {BASIC_TOKEN}", (PASSWORD, f"{USER}:{PASSWORD}")),
    "api_key": (f"api_key_env={ENV}", API_KEY, f"ApiKey {API_KEY}", (API_KEY_PAIR, API_KEY_PAIR.partition(":")[2])),
    "bearer": (f"bearer_token_env={ENV}", BEARER, f"Bearer {BEARER}", ()),
}  # fmt: skip


def exposures(header: str, plain: tuple[str, ...]) -> set[str]:
    """Every form of a secret the echo can carry into output: the header, its token, URL-encoded, JSON-escaped."""
    token = header.partition(" ")[2]
    forms = {header, token, token.rstrip("="), quote(header, safe=""), quote(token, safe="")}
    for text in plain:
        forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    return forms


def leaked(text: str, scheme: str) -> list[str]:
    _, _, header, plain = AUTH[scheme]
    return sorted(form for form in exposures(header, plain) if form in text)


def command(*args: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV: secret}
    return subprocess.run([sys.executable, "-m", "named_senderr", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


def files_text(*paths: Path) -> str:
    """Everything under ``paths`` (files or directories), as text."""
    found = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()]
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in found)


def fast_retry(tmp_path: Path) -> Path:
    path = tmp_path / "ship.toml"
    path.write_text("[retry]\nmax_attempts = 2\ninitial_backoff = 0.001\nmax_backoff = 0.002\n")
    return path


@pytest.mark.parametrize(
    ("kind", "scheme", "status"),
    [("elasticsearch", "basic", 401), ("elasticsearch", "basic", 400), ("elasticsearch", "basic", 500),
     ("elasticsearch", "basic", 200), ("elasticsearch", "api_key", 401), ("elasticsearch", "bearer", 400),
     ("loki", "basic", 401), ("loki", "basic", 400), ("loki", "basic", 500), ("loki", "bearer", 401)],
)  # fmt: skip
def test_ship_redacts_credentials_a_server_echoes(tmp_path: Path, kind: str, scheme: str, status: int) -> None:
    """Status 200 is a ``_bulk`` answer whose every item error quotes the headers."""
    query, secret, header, _ = AUTH[scheme]
    dead = tmp_path / "dead.ndjson"
    with FaultServer(echoing(status)) as server:
        url = f"{kind}+{server.url}{'/named' if kind == 'elasticsearch' else ''}?{query}"
        result = command("ship", "--sample", "--config", str(fast_retry(tmp_path)), "--to", url,
                         "--dead-letter", str(dead), "--rejects", str(tmp_path / "rejects"), secret=secret)  # fmt: skip
    assert server.requests[0].headers["authorization"] == header  # the secret was sent, so it was echoed
    shown = result.stdout + result.stderr + files_text(dead, tmp_path / "rejects")
    assert result.returncode in (3, 4) and "refused request with headers" in shown  # the server's words are kept
    assert leaked(shown, scheme) == []
    assert f"authorization': '{header.split()[0]} {REDACTED}'" in shown


def test_ship_with_a_queue_dir_keeps_echoed_credentials_out_of_the_queue(tmp_path: Path) -> None:
    query, secret, _, _ = AUTH["basic"]
    with FaultServer(echoing(401)) as server:
        result = command("ship", "--sample", "--queue-dir", str(tmp_path / "queue"), "--to",
                         f"elasticsearch+{server.url}/named?{query}", "--dead-letter", str(tmp_path / "dead"),
                         secret=secret)  # fmt: skip
    shown = result.stderr + files_text(tmp_path)
    assert result.returncode == 4 and "refused request with headers" in result.stderr
    assert leaked(shown, "basic") == [] and REDACTED in shown


def test_serve_log_has_no_echoed_credentials(serve, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """On the engine a sink that failed for good ends serve with exit 4, as it ends ship (serve used to go on
    running and refuse every chunk)."""
    query, secret, _, _ = AUTH["basic"]
    with FaultServer(echoing(401)) as server:
        url = f"elasticsearch+{server.url}/named?{query}"
        process = serve("--to", url, "--dead-letter", str(tmp_path / "dead"), env={ENV: secret})
        sender = FluentSender("named", host="127.0.0.1", port=process.port)
        assert sender.emit("log", {"log": LINE})
        sender.close()
        wait_until(lambda: server.requests)
        assert process.stop() == 4  # the summary at the stop logs the sink's failure with the server's words
    shown = process.stderr + files_text(tmp_path)
    assert "refused request with headers" in process.stderr
    assert leaked(shown, "basic") == [] and REDACTED in shown


@pytest.mark.parametrize("kind", ["elasticsearch", "loki"])
def test_report_error_has_no_echoed_credentials(kind: str) -> None:
    query, secret, _, _ = AUTH["basic"]
    with FaultServer(echoing(401)) as server:
        url = f"{kind}+{server.url}{'/named' if kind == 'elasticsearch' else ''}?{query}"
        result = command("report", "--from", url, secret=secret)
    assert result.returncode != 0 and "refused request with headers" in result.stderr
    assert leaked(result.stdout + result.stderr, "basic") == [] and REDACTED in result.stderr


def test_setup_error_has_no_echoed_credentials() -> None:
    query, secret, _, _ = AUTH["basic"]
    with FaultServer(echoing(401)) as server:
        result = command("setup", "elasticsearch", "--to", f"elasticsearch+{server.url}/named?{query}", secret=secret)
    assert result.returncode != 0 and "refused request with headers" in result.stderr
    assert leaked(result.stdout + result.stderr, "basic") == [] and REDACTED in result.stderr


def credentials(scheme: str, monkeypatch: pytest.MonkeyPatch) -> Credentials:
    query, secret, _, _ = AUTH[scheme]
    monkeypatch.setenv(ENV, secret)
    return read_credentials(AuthConfig(**dict(pair.split("=") for pair in query.split("&"))), "test")


@pytest.mark.parametrize(
    "form",
    [PASSWORD, BASIC_TOKEN, f"Basic {BASIC_TOKEN}", quote(BASIC_TOKEN, safe=""), quote(PASSWORD),
     json.dumps(PASSWORD)[1:-1], json.dumps(PASSWORD, ensure_ascii=False)[1:-1], f"{USER}:{PASSWORD}"],
)  # fmt: skip
def test_redact_removes_every_form_of_a_basic_password(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    redacted = credentials("basic", monkeypatch).redact(f"before {form} after")
    assert form.removeprefix("Basic ") not in redacted and REDACTED in redacted
    assert redacted.startswith("before ") and redacted.endswith(" after")


@pytest.mark.parametrize("form", [API_KEY, API_KEY_PAIR, API_KEY_PAIR.partition(":")[2], quote(API_KEY, safe="")])
def test_redact_removes_every_form_of_an_api_key(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert credentials("api_key", monkeypatch).redact(f"x {form} y") == f"x {REDACTED} y"


def test_redact_keeps_the_user_name_and_the_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"user [{USER}] sent Basic {BASIC_TOKEN}"
    assert credentials("basic", monkeypatch).redact(text) == f"user [{USER}] sent Basic {REDACTED}"


def test_credentials_repr_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BEARER not in repr(credentials("bearer", monkeypatch))
