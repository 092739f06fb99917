"""ship into real Elasticsearch, OpenSearch and Loki, checked the way a user checks.

Inputs: the real named logs (tests/data/real-named) and the bundled sample.
Each test ships into its own index or job label, so tests sharing a server
do not see each other's events.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.parse import sample_path
from tests.faults import FaultServer, Forward, Reply

pytestmark = pytest.mark.servers

DATA = Path(__file__).resolve().parent / "data" / "real-named"
REAL_LOGS = [str(DATA / "bind-9.11.37-named.log"), str(DATA / "bind-9.18.49-named.log")]
# What the two real logs hold (tests/data/real-named/README.md): a would-block storm and a few others.
REAL_REASONS = {"would_block": 270, "connection_reset": 9, "host_unreachable": 2, "not_connected": 1}
QUERY_TIME = "2026-11-21T06:00:00Z"  # after the logs' last line; queries look 3 h back from here


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


def test_setup_warns_when_the_index_already_exists_without_the_ip_mapping(search_store, tmp_path: Path, capsys) -> None:
    kind, base = search_store
    url = f"{kind}+{base}/named-senderr-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, url, sample_path()) == 0  # no template yet: dynamic mapping makes client.ip text
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    assert "client.ip mapped as 'text'; the template applies to new indices only" in capsys.readouterr().err


def test_opensearch_data_stream_takes_the_events_once(opensearch_url: str, tmp_path: Path, capsys) -> None:
    url = new_index("opensearch", opensearch_url, tmp_path, data_stream=True)
    name = url.rsplit("/", 1)[1]
    assert main(["setup", "elasticsearch", "--to", url, "--data-stream"]) == 0
    assert f"data stream {name}: already there" in capsys.readouterr().err
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    streams = httpx.get(f"{opensearch_url}/_data_stream/{name}").json()["data_streams"]
    assert [s["name"] for s in streams] == [name] and count(opensearch_url, name) == sum(REAL_REASONS.values())


def logql(base: str, query: str) -> dict[str, int]:
    reply = httpx.get(f"{base}/loki/api/v1/query", params={"query": query, "time": QUERY_TIME})
    reply.raise_for_status()
    results = reply.json()["data"]["result"]
    return {next(iter(r["metric"].values()), ""): int(r["value"][1]) for r in results}


def loki_counts(base: str, job: str, expected: dict[str, int] | None = None) -> dict[str, int]:
    """Counts by reason; polls (bounded) until ``expected`` shows, Loki being eventually consistent."""
    query = f'sum by (reason) (count_over_time({{job="{job}"}}[3h]))'
    deadline = time.monotonic() + 10
    while True:
        counts = logql(base, query)
        if expected is None or counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_logql_counts_by_reason_match_the_files(loki_url: str, tmp_path: Path) -> None:
    job = f"test-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, f"loki+{loki_url}?job={job}", *REAL_LOGS) == 0
    assert loki_counts(loki_url, job, REAL_REASONS) == REAL_REASONS


def test_reshipping_to_loki_adds_no_entries(loki_url: str, tmp_path: Path) -> None:
    job = f"test-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, f"loki+{loki_url}?job={job}", *REAL_LOGS) == 0
    assert ship(tmp_path, f"loki+{loki_url}?job={job}", *REAL_LOGS) == 0
    assert loki_counts(loki_url, job, REAL_REASONS) == REAL_REASONS


def test_client_ip_is_structured_metadata_not_a_label(loki_url: str, tmp_path: Path) -> None:
    job = f"test-{uuid.uuid4().hex[:8]}"
    assert ship(tmp_path, f"loki+{loki_url}?job={job}", *REAL_LOGS) == 0
    expected = sum(1 for e in flat_events(*REAL_LOGS) if e["client_ip"] == "2001:db8:53::2")
    query = f'sum(count_over_time({{job="{job}"}} | client_ip="2001:db8:53::2" [3h]))'
    labels = httpx.get(f"{loki_url}/loki/api/v1/labels", params={"start": "2026-11-21T03:00:00Z"}).json()["data"]
    assert expected > 0 and logql(loki_url, query) == {"": expected}
    assert "client_ip" not in labels


def test_429_storm_and_lost_answers_in_front_of_loki_lose_and_duplicate_nothing(loki_url: str, tmp_path: Path) -> None:
    job = f"test-{uuid.uuid4().hex[:8]}"
    plan = lambda request, n: Reply(429, b"Ingestion rate limit exceeded") if n < 3 else Forward(loki_url)  # noqa: E731
    with FaultServer(plan, lose_answer=frozenset({3}), cut=frozenset({4})) as proxy:
        assert ship(tmp_path, f"loki+{proxy.url}?job={job}", *REAL_LOGS) == 0
    assert loki_counts(loki_url, job, REAL_REASONS) == REAL_REASONS
