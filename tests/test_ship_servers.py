"""ship into real Elasticsearch, OpenSearch and VictoriaLogs, checked the way a user checks.

The Loki sink is tested against VictoriaLogs' implementation of the Loki push API (Loki itself is AGPL and
not used here), with the stored entries counted through LogsQL. Inputs: the real named logs
(tests/data/real-named) and the bundled sample. Each test ships into its own index or job label, so tests
sharing a server do not see each other's events.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.parse import sample_path
from tests import servers
from tests.faults import FaultServer, Forward, Reply
from tests.servers import victorialogs

pytestmark = pytest.mark.servers

DATA = Path(__file__).resolve().parent / "data" / "real-named"
REAL_LOGS = [str(DATA / "bind-9.11.37-named.log"), str(DATA / "bind-9.18.49-named.log")]
# What the two real logs hold (tests/data/real-named/README.md): a would-block storm and a few others.
REAL_REASONS = {"would_block": 270, "connection_reset": 9, "host_unreachable": 2, "not_connected": 1}
LOGSQL_RANGE = {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}  # LogsQL wants a range


def ship(tmp_path: Path, url: str, *inputs: str) -> int:
    """The CLI with quick retries, so fault tests take milliseconds per retry, not seconds."""
    config = tmp_path / "ship.toml"
    config.write_text("[retry]\ninitial_backoff = 0.01\nmax_backoff = 0.05\n")
    dead = tmp_path / "dead.ndjson"
    args = ["--to", url, "--config", str(config), "--timezone", "UTC", "--dead-letter", str(dead), "--no-progress"]
    return main(["ship", *inputs, *args])


def flat_events(*inputs: str) -> list[dict]:
    """What ``parse`` makes of the inputs: the oracle for what the stores must hold."""
    out = subprocess.run(
        [sys.executable, "-m", "named_senderr", "parse", "--format", "flat", "--timezone", "UTC", *inputs],
        capture_output=True,
        check=True,
    ).stdout
    return [orjson.loads(line) for line in out.splitlines()]


@pytest.fixture(params=["elasticsearch", "opensearch"])
def search_store(request) -> tuple[str, str]:
    """(kind, base URL) of each search server."""
    return request.param, request.getfixturevalue(f"{request.param}_url")


def new_index(kind: str, base: str, tmp_path: Path, data_stream: bool = False) -> str:
    """A fresh index name with the template installed; returns the sink URL."""
    url = f"{kind}+{base}/named-senderr-{uuid.uuid4().hex[:8]}"
    assert main(["setup", "elasticsearch", "--to", url, *(["--data-stream"] if data_stream else [])]) == 0
    return url


def search(base: str, index: str, body: dict) -> dict:
    httpx.post(f"{base}/{index}/_refresh").raise_for_status()
    reply = httpx.post(f"{base}/{index}/_search", json=body)
    reply.raise_for_status()
    return reply.json()


def count(base: str, index: str) -> int:
    return search(base, index, {"size": 0, "track_total_hits": True})["hits"]["total"]["value"]


def test_setup_maps_client_ip_as_ip_and_reasons_as_keywords(search_store, tmp_path: Path) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    index = url.rsplit("/", 1)[1]
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    fields = "client.ip,event.reason,host.name,dns.question.name,bind.view,@timestamp,message"
    mapping = httpx.get(f"{base}/{index}/_mapping/field/{fields}").json()[index]["mappings"]
    types = {name: next(iter(m["mapping"].values()))["type"] for name, m in mapping.items()}
    assert types == {"client.ip": "ip", "event.reason": "keyword", "dns.question.name": "keyword", "host.name": "keyword",
                     "bind.view": "keyword", "@timestamp": "date", "message": "text"}  # fmt: skip


def test_cidr_term_query_on_client_ip_finds_the_network(search_store, tmp_path: Path) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    assert ship(tmp_path, url, sample_path()) == 0
    network = ipaddress.ip_network("198.51.100.0/24")
    expected = sum(
        1 for e in flat_events(sample_path()) if e["client_ip"] and ipaddress.ip_address(e["client_ip"]) in network
    )
    found = search(base, url.rsplit("/", 1)[1], {"query": {"term": {"client.ip": "198.51.100.0/24"}}, "size": 0})
    assert expected > 0 and found["hits"]["total"]["value"] == expected


def test_terms_aggregation_on_event_reason_counts_each_reason(search_store, tmp_path: Path) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    body = {"size": 0, "aggs": {"reasons": {"terms": {"field": "event.reason"}}}}
    buckets = search(base, url.rsplit("/", 1)[1], body)["aggregations"]["reasons"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in buckets} == REAL_REASONS


def test_reshipping_the_same_files_adds_no_documents(search_store, tmp_path: Path, capsys) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    assert count(base, url.rsplit("/", 1)[1]) == sum(REAL_REASONS.values())
    assert "sent 282 (282 already stored)" in capsys.readouterr().err


def test_mapping_errors_are_dead_lettered_with_the_servers_reason(search_store, tmp_path: Path) -> None:
    """A real partial failure: an index where dns.question.name is a number refuses every event with a qname."""
    kind, base = search_store
    index = f"named-senderr-{uuid.uuid4().hex[:8]}"
    mappings = {"properties": {"dns": {"properties": {"question": {"properties": {"name": {"type": "long"}}}}}}}
    httpx.put(f"{base}/{index}", json={"mappings": mappings}).raise_for_status()
    assert ship(tmp_path, f"{kind}+{base}/{index}", *REAL_LOGS) == 3
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    with_qname = sum(1 for e in flat_events(*REAL_LOGS) if e["qname"])
    assert len(dead) == with_qname and count(base, index) == sum(REAL_REASONS.values()) - with_qname
    assert all(d["reason"].startswith("400: ") and "dns.question.name" in d["reason"] for d in dead)


def test_429_storm_in_front_of_the_store_loses_and_duplicates_nothing(search_store, tmp_path: Path) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    index = url.rsplit("/", 1)[1]

    def storm(request: object, n: int) -> Reply | Forward:
        return Reply(429, b'{"error":{"type":"es_rejected_execution_exception"}}') if n < 4 else Forward(base)

    with FaultServer(storm) as proxy:
        assert ship(tmp_path, f"{kind}+{proxy.url}/{index}", *REAL_LOGS) == 0
    assert count(base, index) == sum(REAL_REASONS.values())


def test_answer_lost_after_storing_is_replayed_without_duplicates(search_store, tmp_path: Path) -> None:
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    index = url.rsplit("/", 1)[1]
    with FaultServer(lambda request, n: Forward(base), lose_answer=frozenset({0}), cut=frozenset({1})) as proxy:
        assert ship(tmp_path, f"{kind}+{proxy.url}/{index}", *REAL_LOGS) == 0
    assert proxy.cuts == 2 and count(base, index) == sum(REAL_REASONS.values())


@pytest.mark.parametrize(("query", "encoding"), [("", None), ("?compression=gzip:6", "gzip")])
def test_bulk_bodies_are_compressed_as_the_setting_says_and_all_stored(
    search_store, tmp_path: Path, query: str, encoding: str | None
) -> None:
    """On loopback nothing by default (the proxy is on 127.0.0.1); gzip:6 when asked. The store takes both."""
    kind, base = search_store
    index = new_index(kind, base, tmp_path).rsplit("/", 1)[1]
    with FaultServer(lambda request, n: Forward(base)) as proxy:
        assert ship(tmp_path, f"{kind}+{proxy.url}/{index}{query}", *REAL_LOGS) == 0
    bulks = [r for r in proxy.requests if r.path.startswith(f"/{index}/_bulk")]
    assert bulks and {r.headers.get("content-encoding") for r in bulks} == {encoding}
    assert count(base, index) == sum(REAL_REASONS.values())


def test_setup_warns_when_the_index_already_exists_without_the_ip_mapping(search_store, tmp_path: Path, capsys) -> None:
    kind, base = search_store
    url = f"{kind}+{base}/named-senderr-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, url, sample_path()) == 0  # no template yet: dynamic mapping makes client.ip text
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    assert "client.ip mapped as 'text'; the template applies to new indices only" in capsys.readouterr().err


def ship_process(tmp_path: Path, url: str, *inputs: str) -> None:
    """``ship`` as its own process, as a user runs it; returns once it has exited 0."""
    command = [sys.executable, "-m", "named_senderr", "ship", *inputs, "--to", url, "--timezone", "UTC",
               "--dead-letter", str(tmp_path / "dead.ndjson"), "--no-progress"]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=True)


def test_index_from_the_shipped_template_is_green_on_a_single_node(search_store, tmp_path: Path) -> None:
    """The template asks for replicas only where a node can hold them: a lone node is green, not yellow."""
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    ship_process(tmp_path, url, *REAL_LOGS)
    index = url.rsplit("/", 1)[1]
    health = httpx.get(f"{base}/_cluster/health/{index}", params={"wait_for_status": "green", "timeout": "5s"})
    assert health.json()["status"] == "green" and health.json()["unassigned_shards"] == 0


def test_count_is_every_event_the_moment_ship_exits(search_store, tmp_path: Path) -> None:
    """No refresh asked by the test: a one-shot ship leaves what it wrote searchable."""
    kind, base = search_store
    url = new_index(kind, base, tmp_path)
    ship_process(tmp_path, url, *REAL_LOGS)
    reply = httpx.get(f"{base}/{url.rsplit('/', 1)[1]}/_count")
    assert reply.json()["count"] == sum(REAL_REASONS.values())


def test_opensearch_data_stream_takes_the_events_once(opensearch_url: str, tmp_path: Path, capsys) -> None:
    url = new_index("opensearch", opensearch_url, tmp_path, data_stream=True)
    name = url.rsplit("/", 1)[1]
    assert main(["setup", "elasticsearch", "--to", url, "--data-stream"]) == 0
    assert f"data stream {name}: already there" in capsys.readouterr().err
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    streams = httpx.get(f"{opensearch_url}/_data_stream/{name}").json()["data_streams"]
    assert [s["name"] for s in streams] == [name] and count(opensearch_url, name) == sum(REAL_REASONS.values())


def logsql(base: str, query: str, tenant: str = "0:0", auth: tuple[str, str] | None = None) -> list[dict]:
    """The rows a LogsQL query returns in one VictoriaLogs tenant (``ACCOUNT:PROJECT``), over every fixture time."""
    account, _, project = tenant.partition(":")
    headers = {"AccountID": account, "ProjectID": project or "0"}
    data = {"query": query, **LOGSQL_RANGE}
    reply = httpx.post(f"{base}/select/logsql/query", data=data, headers=headers, auth=auth, timeout=60)
    reply.raise_for_status()
    return [orjson.loads(line) for line in reply.content.splitlines()]


def logsql_counts(
    base: str,
    query: str,
    expected: dict[str, int] | None = None,
    by: str = "reason",
    tenant: str = "0:0",
    auth: tuple[str, str] | None = None,
) -> dict[str, int]:
    """Entries matching ``query`` counted by field ``by`` (``by=""``: the total, keyed ""); polls (bounded)
    until ``expected`` shows, fresh entries becoming searchable within about a second."""
    stats = f"{query} | stats by ({by}) count() n" if by else f"{query} | stats count() n"
    deadline = time.monotonic() + 10
    while True:
        counts = {row.get(by, ""): int(row["n"]) for row in logsql(base, stats, tenant, auth)}
        if expected is None or counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI=true, as the session's servers do (tests/conftest.py)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def own_victorialogs(*flags: str) -> Iterator[servers.Server]:
    """A VictoriaLogs of the caller's own, started as the session's is plus ``flags``, on plain HTTP at its url
    (more ``-httpListenAddr`` flags add ports); stopped and its data removed after."""
    try:
        home = servers.prepare("victorialogs")
    except servers.ServerError as exc:
        unavailable(f"victorialogs unavailable: {exc}")
    data, port = servers.new_data_dir("victorialogs-own"), servers.free_port()
    command = [str(home / "victoria-logs"), f"-storageDataPath={data / 'storage'}", f"-httpListenAddr=127.0.0.1:{port}",
               "-retentionPeriod=100y", "-loggerLevel=WARN", *flags]  # fmt: skip
    server = servers.launch(
        "victorialogs", victorialogs.VERSION, command, port=port, health_path="/health", data_dir=data
    )
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def new_job() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def loki_push(base: str, job: str, query: str = "") -> str:
    """The sink URL of VictoriaLogs' Loki push endpoint for one job (``query``: more settings, ``&k=v``)."""
    return f"loki+{base}/insert?job={job}{query}"


def dead_letters(tmp_path: Path) -> list[dict]:
    path = tmp_path / "dead.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def assert_kept_unsent(tmp_path: Path, reason: str) -> None:
    """A sink that stopped leaves every event it did not send in the dead-letter file (no queue here), none
    refused one by one: the server's 400 was about the settings, not the entries."""
    dead = dead_letters(tmp_path)
    assert len(dead) == 282 and all(d["reason"].startswith(reason) for d in dead), dead[:1]


def test_loki_push_counts_by_reason_match_the_files(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, loki_push(victorialogs_url, job), *REAL_LOGS) == 0
    assert logsql_counts(victorialogs_url, f'{{job="{job}"}}', REAL_REASONS) == REAL_REASONS


@pytest.mark.parametrize(("setting", "field"), [("", "message"), ("&_msg_field=reason_text", "reason_text")])
def test_victorialogs_message_is_the_field_msg_field_names(
    victorialogs_url: str, tmp_path: Path, setting: str, field: str
) -> None:
    """Without a message field VictoriaLogs stores "missing _msg field": ``message`` unless _msg_field says."""
    job = new_job()
    assert ship(tmp_path, loki_push(victorialogs_url, job, setting), *REAL_LOGS) == 0
    logsql_counts(victorialogs_url, f'{{job="{job}"}}', {"": 282}, by="")
    stored = sorted(row["_msg"] for row in logsql(victorialogs_url, f'{{job="{job}"}} | fields _msg'))
    assert stored == sorted(e[field] for e in flat_events(*REAL_LOGS))


def test_client_ip_is_a_field_not_a_stream_label(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, loki_push(victorialogs_url, job), *REAL_LOGS) == 0
    expected = sum(1 for e in flat_events(*REAL_LOGS) if e["client_ip"] == "2001:db8:53::2")
    query = f'{{job="{job}"}} client_ip:="2001:db8:53::2"'
    assert expected > 0 and logsql_counts(victorialogs_url, query, {"": expected}, by="") == {"": expected}
    params = {"query": f'{{job="{job}"}}', **LOGSQL_RANGE}
    names = httpx.get(f"{victorialogs_url}/select/logsql/stream_field_names", params=params).json()["values"]
    assert {n["value"] for n in names} == {"job", "reason", "message_kind"}  # the real logs name no host


def test_tenant_is_victorialogs_account_and_project(victorialogs_url: str, tmp_path: Path) -> None:
    """X-Scope-OrgID ``12:3`` is AccountID 12, ProjectID 3 (VictoriaLogs v1.52.1 app/vlinsert/loki/loki.go:70-80)."""
    job = new_job()
    assert ship(tmp_path, loki_push(victorialogs_url, job, "&tenant=12:3"), *REAL_LOGS) == 0
    query = f'{{job="{job}"}}'
    assert logsql_counts(victorialogs_url, query, REAL_REASONS, tenant="12:3") == REAL_REASONS
    assert logsql_counts(victorialogs_url, query) == {}


def test_tenant_victorialogs_cannot_read_stops_the_sink_with_the_fix(
    victorialogs_url: str, tmp_path: Path, capsys
) -> None:
    job = new_job()
    assert ship(tmp_path, loki_push(victorialogs_url, job, "&tenant=dns-team"), *REAL_LOGS) == 4
    assert "ACCOUNT:PROJECT, both numbers" in capsys.readouterr().err
    assert logsql_counts(victorialogs_url, f'{{job="{job}"}}', by="") == {"": 0}
    assert_kept_unsent(tmp_path, "not sent: 400: cannot parse common params")


def test_victorialogs_url_without_insert_stops_the_sink_with_the_fix(
    victorialogs_url: str, tmp_path: Path, capsys
) -> None:
    assert ship(tmp_path, f"loki+{victorialogs_url}?job={new_job()}", *REAL_LOGS) == 4
    assert "loki+http://HOST:9428/insert" in capsys.readouterr().err
    assert_kept_unsent(tmp_path, "not sent: 400: unsupported path requested")


def test_429_storm_and_cut_requests_in_front_of_victorialogs_lose_and_duplicate_nothing(
    victorialogs_url: str, tmp_path: Path
) -> None:
    job = new_job()
    plan = lambda request, n: Reply(429, b"Ingestion rate limit exceeded") if n < 3 else Forward(victorialogs_url)  # noqa: E731
    with FaultServer(plan, cut=frozenset({3})) as proxy:
        assert ship(tmp_path, f"loki+{proxy.url}/insert?job={job}", *REAL_LOGS) == 0
    assert proxy.cuts == 1 and logsql_counts(victorialogs_url, f'{{job="{job}"}}', REAL_REASONS) == REAL_REASONS


def test_answer_lost_after_victorialogs_stored_the_batch_stores_it_twice_and_loses_nothing(
    victorialogs_url: str, tmp_path: Path
) -> None:
    """VictoriaLogs serves no Loki query API to ask what it kept, and does not deduplicate: at-least-once."""
    job = new_job()
    with FaultServer(lambda request, n: Forward(victorialogs_url), lose_answer=frozenset({0})) as proxy:
        assert ship(tmp_path, f"loki+{proxy.url}/insert?job={job}", *REAL_LOGS) == 0
    twice = {reason: 2 * n for reason, n in REAL_REASONS.items()}
    assert [r.method for r in proxy.requests] == ["POST", "POST"]  # the second is the batch again, unasked
    assert logsql_counts(victorialogs_url, f'{{job="{job}"}}', twice) == twice


def test_request_victorialogs_finds_too_large_is_split_until_it_fits(tmp_path: Path) -> None:
    """VictoriaLogs answers 400, not 413, past -loki.maxRequestSize (uncompressed); the sink splits all the same."""
    job = new_job()
    with own_victorialogs("-loki.maxRequestSize=16KiB") as server:
        assert ship(tmp_path, loki_push(server.url, job), *REAL_LOGS) == 0
        assert logsql_counts(server.url, f'{{job="{job}"}}', REAL_REASONS) == REAL_REASONS


def test_entry_too_large_for_victorialogs_even_alone_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    job = new_job()
    with own_victorialogs("-loki.maxRequestSize=300") as server:
        assert ship(tmp_path, loki_push(server.url, job), *REAL_LOGS) == 3
        assert logsql_counts(server.url, f'{{job="{job}"}}', by="") == {"": 0}
    dead = dead_letters(tmp_path)
    assert len(dead) == 282 and {d["labels"]["job"] for d in dead} == {job}
    assert all("exceeding -loki.maxRequestSize=300 bytes" in d["reason"] for d in dead)
