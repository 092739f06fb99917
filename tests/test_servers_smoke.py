"""The real servers behave the way the sinks rely on: template + idempotent ``_bulk`` ``create`` + search
on Elasticsearch/OpenSearch, Loki push (JSON and gzip) with structured metadata + a LogsQL count on VictoriaLogs."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from tests.test_ship_servers import logsql, logsql_counts

pytestmark = pytest.mark.servers  # search_url reaches its server via getfixturevalue, invisible to the hook

# A fixed 2026 time, months before "now": the stores must accept old entries and still query them.
TS = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TS_NS = int(TS.timestamp()) * 1_000_000_000


@pytest.fixture(params=["elasticsearch", "opensearch"])
def search_url(request: pytest.FixtureRequest) -> str:
    """Run each search-engine test against both Elasticsearch and OpenSearch."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def bulk_body(docs: dict[str, dict[str, object]], index: str) -> bytes:
    """NDJSON ``create`` actions with deterministic ids, like the sinks send."""
    lines = []
    for doc_id, doc in docs.items():
        lines += [orjson.dumps({"create": {"_index": index, "_id": doc_id}}), orjson.dumps(doc)]
    return b"\n".join(lines) + b"\n"


def test_search_template_bulk_create_and_search(search_url: str) -> None:
    with httpx.Client(base_url=search_url, timeout=30) as http:
        template = {
            "index_patterns": ["smoke-*"],
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "client": {"properties": {"ip": {"type": "ip"}}},
                        "reason": {"type": "keyword"},
                    }
                },
            },
        }
        resp = http.put("/_index_template/smoke", json=template)
        assert resp.status_code == 200, resp.text
        assert resp.json()["acknowledged"] is True

        docs: dict[str, dict[str, object]] = {
            "a": {"@timestamp": TS.isoformat(), "client": {"ip": "192.0.2.1"}, "reason": "timed out"},
            "b": {"@timestamp": TS.isoformat(), "client": {"ip": "192.0.2.2"}, "reason": "broken pipe"},
            "c": {"@timestamp": TS.isoformat(), "client": {"ip": "not-an-ip"}, "reason": "timed out"},
        }
        headers = {"Content-Type": "application/x-ndjson"}
        resp = http.post("/_bulk?refresh=wait_for", content=bulk_body(docs, "smoke-1"), headers=headers)
        assert resp.status_code == 200, resp.text
        result = resp.json()
        assert result["errors"] is True  # per-item statuses: the bad IP fails alone
        assert [item["create"]["status"] for item in result["items"]] == [201, 201, 400]

        # Resending the same ids is a 409 per item: what makes the sinks' retries idempotent.
        resp = http.post("/_bulk?refresh=wait_for", content=bulk_body(docs, "smoke-1"), headers=headers)
        assert [item["create"]["status"] for item in resp.json()["items"]] == [409, 409, 400]

        mapping = http.get("/smoke-1/_mapping").json()
        assert mapping["smoke-1"]["mappings"]["properties"]["client"]["properties"]["ip"]["type"] == "ip"

        query = {"query": {"term": {"client.ip": "192.0.2.0/24"}}, "sort": [{"reason": "asc"}]}
        resp = http.post("/smoke-1/_search", json=query)
        assert resp.status_code == 200, resp.text
        hits = resp.json()["hits"]
        assert hits["total"]["value"] == 2
        assert [(h["_id"], h["_source"]["reason"]) for h in hits["hits"]] == [("b", "broken pipe"), ("a", "timed out")]


def loki_push(http: httpx.Client, values: list[list[object]], gzip: bool, tenant: str) -> httpx.Response:
    body = orjson.dumps({"streams": [{"stream": {"job": "x"}, "values": values}]})
    headers = {"Content-Type": "application/json", "X-Scope-OrgID": tenant}
    if gzip:
        body, headers = zlib.compress(body, wbits=31), {**headers, "Content-Encoding": "gzip"}
    return http.post("/insert/loki/api/v1/push", content=body, headers=headers, params={"_msg_field": "message"})


@pytest.mark.parametrize("gzip", [False, True], ids=["json", "gzip"])
def test_victorialogs_loki_push_with_structured_metadata_and_count(victorialogs_url: str, gzip: bool) -> None:
    """VictoriaLogs' Loki endpoint: JSON lines become fields, metadata too, the labels the stream; no deduplication."""
    tenant = "7:1" if gzip else "7:0"  # one tenant per case: the counts below see only their own pushes
    values: list[list[object]] = [
        [str(TS_NS + i), orjson.dumps({"message": f"line {i}", "offset": i}).decode(), {"reason": reason,
         "client_ip": f"192.0.2.{i}"}]
        for i, reason in enumerate(["timed out", "timed out", "broken pipe"])
    ]  # fmt: skip
    with httpx.Client(base_url=victorialogs_url, timeout=30) as http:
        assert loki_push(http, values, gzip, tenant).status_code == 204
        assert loki_push(http, values[:1], gzip, tenant).status_code == 204  # the same entry again: stored twice
    counts = {"timed out": 3, "broken pipe": 1}
    assert logsql_counts(victorialogs_url, '{job="x"}', counts, tenant=tenant) == counts
    rows = logsql(victorialogs_url, '{job="x"} client_ip:="192.0.2.2" | fields _msg, _stream, _time, offset', tenant)
    assert rows == [
        {"_msg": "line 2", "_stream": '{job="x"}', "_time": "2026-03-01T12:00:00.000000002Z", "offset": "2"}
    ]
