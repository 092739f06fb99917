"""Faults a real server will not produce on demand, injected by tests/faults.py.

Each test ships the bundled sample (39 events) through ``run_ship`` with sleeps
skipped, and checks what was stored, retried and dead-lettered. The same
faults in front of real servers are in test_ship_servers.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from named_senderr.cli.parse import sample_path
from named_senderr.engine.shipping import ShipResult, run_ship
from named_senderr.settings.loading import load_ship_config
from tests.faults import FaultServer, Reply, Request, bulk_answer

SAMPLE_EVENTS = 39
ROOT = Path(__file__).resolve().parent.parent


def ship(url: str, tmp_path: Path, max_events: int = 10, log: str | None = None) -> ShipResult:
    table = tmp_path / "ship.toml"
    table.write_text(f"[batch]\nmax_events = {max_events}\n[retry]\nmax_attempts = 12\n")
    inputs = (log or sample_path(),)
    config = load_ship_config(table, [url], {"inputs": inputs, "dead_letter": tmp_path / "dead.ndjson"})
    return run_ship(config, warn=print, sleep=lambda seconds: None)


def bulk_requests(server: FaultServer) -> list[Request]:
    """The ``_bulk`` requests, without the refresh that ends a one-shot run."""
    return [r for r in server.requests if "/_bulk" in r.path]


def all_created(request: Request, n: int) -> Reply:
    return bulk_answer([201] * (len(request.ndjson) // 2))


def stored_ids(server: FaultServer, accepted: set[int]) -> list[str]:
    ids = []
    for n, request in enumerate(server.requests):
        if n in accepted:
            ids += [line["create"]["_id"] for line in request.ndjson[::2]]
    return ids


def test_429_storm_is_ridden_out_and_every_event_stored_once(tmp_path: Path) -> None:
    def storm(request: Request, n: int) -> Reply:
        return Reply(429, b'{"error":{"type":"es_rejected_execution_exception"}}') if n < 8 else all_created(request, n)

    with FaultServer(storm) as server:
        result = ship(f"elasticsearch+{server.url}/named", tmp_path)
    counters = result.sinks[f"elasticsearch+{server.url}/named"]
    ids = stored_ids(server, set(range(8, len(server.requests))))
    assert (counters.sent, counters.dead_lettered, result.failures) == (SAMPLE_EVENTS, 0, [])
    assert len(ids) == len(set(ids)) == SAMPLE_EVENTS
    assert counters.retried > 0


def test_413_splits_the_batch_until_it_fits(tmp_path: Path) -> None:
    small_only = lambda request, n: Reply(413) if len(request.ndjson) > 6 else all_created(request, n)  # noqa: E731
    with FaultServer(small_only) as server:
        result = ship(f"elasticsearch+{server.url}/named", tmp_path)
    accepted = {n for n, r in enumerate(server.requests) if len(r.ndjson) <= 6}
    assert sorted(stored_ids(server, accepted)) == sorted(set(stored_ids(server, accepted)))
    assert result.sinks[f"elasticsearch+{server.url}/named"].sent == SAMPLE_EVENTS


def test_partial_bulk_failure_resends_only_the_rejected_items(tmp_path: Path) -> None:
    def partial(request: Request, n: int) -> Reply:
        count = len(request.ndjson) // 2
        return bulk_answer([429] + [201] * (count - 1)) if n == 0 else all_created(request, n)

    with FaultServer(partial) as server:
        result = ship(f"elasticsearch+{server.url}/named", tmp_path, max_events=100)
    first, second = bulk_requests(server)
    assert second.ndjson == first.ndjson[:2]
    assert result.sinks[f"elasticsearch+{server.url}/named"].sent == SAMPLE_EVENTS


def test_partial_bulk_failure_dead_letters_refused_items_with_the_reason(tmp_path: Path) -> None:
    def partial(request: Request, n: int) -> Reply:
        count = len(request.ndjson) // 2
        return bulk_answer([201, 400] + [201] * (count - 2), "failed to parse field [client.ip] of type [ip]")

    with FaultServer(partial) as server:
        result = ship(f"elasticsearch+{server.url}/named", tmp_path, max_events=100)
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    assert result.dead_lettered == 1 and len(bulk_requests(server)) == 1
    assert dead[0]["reason"] == "400: document_parsing_exception: failed to parse field [client.ip] of type [ip]"
    assert dead[0]["document"]["event"]["original"] == bulk_requests(server)[0].ndjson[3]["event"]["original"]


def test_connection_cut_mid_request_is_retried(tmp_path: Path) -> None:
    with FaultServer(all_created, cut=frozenset({0, 1})) as server:
        result = ship(f"elasticsearch+{server.url}/named", tmp_path)
    counters = result.sinks[f"elasticsearch+{server.url}/named"]
    assert server.cuts == 2
    assert (counters.sent, counters.dead_lettered, result.failures) == (SAMPLE_EVENTS, 0, [])


def test_loki_retry_after_429_sends_the_same_timestamps(tmp_path: Path) -> None:
    with FaultServer(
        lambda request, n: Reply(429, b"Ingestion rate limit exceeded") if n == 0 else Reply(204)
    ) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    first, second = (orjson.loads(r.body) for r in server.requests)
    assert first == second
    assert result.sinks[f"loki+{server.url}"].sent == SAMPLE_EVENTS


def test_loki_connection_cut_is_retried(tmp_path: Path) -> None:
    with FaultServer(lambda request, n: Reply(204), cut=frozenset({0})) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    assert result.sinks[f"loki+{server.url}"].sent == SAMPLE_EVENTS and server.cuts == 1


def test_loki_400_is_dead_lettered_with_lokis_reason(tmp_path: Path) -> None:
    reason = b"entry for stream '{job=\"named-senderr\"}' has timestamp too old"
    with FaultServer(lambda request, n: Reply(400, reason)) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    assert result.dead_lettered == SAMPLE_EVENTS and len(server.requests) == 1
    assert dead[0]["reason"] == "400: " + reason.decode()


def test_loki_tenant_is_sent_as_x_scope_orgid(tmp_path: Path) -> None:
    with FaultServer(lambda request, n: Reply(204)) as server:
        ship(f"loki+{server.url}?tenant=dns-team", tmp_path, max_events=100)
    assert server.requests[0].headers["x-scope-orgid"] == "dns-team"


@pytest.mark.parametrize(("path", "pushed"), [("", "/loki/api/v1/push"),
                                             ("/insert", "/insert/loki/api/v1/push?_msg_field=message")])  # fmt: skip
def test_only_victorialogs_push_path_gets_its_message_field_setting(tmp_path: Path, path: str, pushed: str) -> None:
    """Loki is sent nothing it does not document; VictoriaLogs (under /insert) is told which field is the message."""
    with FaultServer(lambda request, n: Reply(204)) as server:
        ship(f"loki+{server.url}{path}", tmp_path, max_events=100)
    assert [r.path for r in server.requests] == [pushed]


def test_bodies_are_gzip_compressed_when_the_sink_asks(tmp_path: Path) -> None:
    """On loopback (as here) the default is none (tests/test_ship_servers.py); ``compression=gzip`` overrides it."""
    with FaultServer(all_created) as server:
        ship(f"elasticsearch+{server.url}/named?compression=gzip", tmp_path)
    assert {r.headers["content-encoding"] for r in bulk_requests(server)} == {"gzip"}


def test_unreachable_server_fails_the_sink_and_stops_reading(tmp_path: Path) -> None:
    """Reading stops at the next source batch (2,000 candidate lines), so the input must be larger than one."""
    log = tmp_path / "named.log"
    generate = [sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", "10000", "--error-rate", "1"]
    subprocess.run([*generate, "-o", str(log)], check=True)
    with FaultServer(all_created) as server:
        url = server.url
    result = ship(f"loki+{url}", tmp_path, max_events=5, log=str(log))
    assert result.stopped and "gave up after 12 attempt(s)" in result.failures[0]
    assert result.stats.events < 10_000


def test_every_event_read_but_not_sent_is_dead_lettered_when_a_sink_fails(tmp_path: Path) -> None:
    with FaultServer(all_created) as server:
        url = server.url
    result = ship(f"loki+{url}", tmp_path, max_events=5)
    assert result.dead_lettered == result.stats.events
