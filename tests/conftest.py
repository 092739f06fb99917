"""Shared pytest fixtures.

Real-server fixtures (``elasticsearch_url``, ``opensearch_url``, ``victorialogs_url``, ``kafka_bootstrap``) start one server per test
session from the cache filled by ``python -m tests.servers prepare`` (or fill it on first use). Tests
that use them get the ``servers`` marker automatically, so ``pytest -m "not servers"`` skips them.
Without Java/Go, or when preparation fails, they are skipped — except under ``CI=true``, where a
missing server is a failure, not a silent skip.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest puts tests/ (not the repo root) on sys.path for a rootdir conftest; `tests.servers` needs the root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.test_forward_serve_cli import Serve  # noqa: E402

SERVER_FIXTURES = {
    "elasticsearch_url": "elasticsearch",
    "opensearch_url": "opensearch",
    "victorialogs_url": "victorialogs",
    "kafka_bootstrap": "kafka",
    "kafka_server": "kafka",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that (directly or through other fixtures) needs a real server with ``servers``.

    Tests reaching the servers only through ``request.getfixturevalue`` are invisible here: give them
    ``@pytest.mark.servers`` (or a module-level ``pytestmark``) yourself.
    """
    for item in items:
        if SERVER_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def _server_unavailable(name: str, reason: str) -> None:
    """Skip locally, fail under CI=true: CI must never go green because a server quietly didn't start."""
    message = f"{name} unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _start_server(name: str) -> Iterator[servers.Server]:
    """Prepare and start ``name`` for the session, yield it, stop it at session end.

    pytest caches a session fixture's skip/failure, so a broken server costs one attempt, not one per test.
    """
    try:
        server = servers.start(name)
    except servers.ServerError as exc:  # includes ToolMissing (no java, mvn or go)
        reason = str(exc)
    else:
        reason = ""
    if reason:
        _server_unavailable(name, reason)  # outside `except`: no chained traceback noise
    try:
        yield server
    finally:
        server.stop()


def _run_server(name: str) -> Iterator[str]:
    """Like ``_start_server``, yielding the server's base URL."""
    for server in _start_server(name):
        yield server.url


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a fresh single-node Elasticsearch 8.x, security off."""
    yield from _run_server("elasticsearch")


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a fresh single-node OpenSearch 2.x, no security plugin."""
    yield from _run_server("opensearch")


@pytest.fixture(scope="session")
def victorialogs_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a fresh VictoriaLogs, retention long enough for the fixtures.

    It also serves the Loki push API at ``/insert/loki/api/v1/push``: the Loki sink's real server here.
    """
    yield from _run_server("victorialogs")


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[servers.Server]:
    """A fresh one-node KRaft Kafka 4.x for the session; ``endpoints["sasl"]`` is its SASL/PLAIN listener."""
    yield from _start_server("kafka")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: servers.Server) -> str:
    """Bootstrap address (``127.0.0.1:PORT``, PLAINTEXT) of the session's Kafka; no topic is auto-created.

    Reserve a topic per test with ``tests.servers.kafka.new_topic(kafka_bootstrap, partitions)``.
    """
    return kafka_server.url


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free a moment ago; for several, call ``tests.servers.free_port()``."""
    return servers.free_port()


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    """``serve`` processes a test starts: any still running at its end are killed."""
    started: list[Serve] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)
