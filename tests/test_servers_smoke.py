"""The real servers behave the way the sinks rely on: template + idempotent ``_bulk`` ``create`` + search
on Elasticsearch/OpenSearch, JSON push with structured metadata + a LogQL count on Loki."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson
import pytest

pytestmark = pytest.mark.servers  # search_url reaches its server via getfixturevalue, invisible to the hook

# A fixed 2026 time, months before "now": Loki must accept old samples and still query them.
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


def loki_push(http: httpx.Client, values: list[list[object]]) -> httpx.Response:
    return http.post("/loki/api/v1/push", json={"streams": [{"stream": {"job": "x"}, "values": values}]})


def test_loki_push_with_structured_metadata_and_count(loki_url: str) -> None:
    values: list[list[object]] = [
        [str(TS_NS + i), f"line {i}", {"reason": reason, "client_ip": f"192.0.2.{i}"}]
        for i, reason in enumerate(["timed out", "timed out", "broken pipe"])
    ]
    with httpx.Client(base_url=loki_url, timeout=30) as http:
        resp = loki_push(http, values)
        assert resp.status_code == 204, resp.text
        # A retry with the original timestamps is deduplicated by Loki, not counted twice.
        assert loki_push(http, values).status_code == 204

        at = str(TS_NS + 10 * 1_000_000_000)
        params = {"query": 'sum by (reason) (count_over_time({job="x"}[1h]))', "start": at, "end": at, "step": "60"}
        resp = http.get("/loki/api/v1/query_range", params=params)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert data["resultType"] == "matrix"
        counts = {series["metric"]["reason"]: series["values"][-1][1] for series in data["result"]}
        assert counts == {"timed out": "2", "broken pipe": "1"}

        # Structured metadata is filterable without being a stream label.
        start, end = str(TS_NS - 1), str(TS_NS + 1_000_000_000_000)
        params = {"query": '{job="x"} | client_ip="192.0.2.2"', "start": start, "end": end}
        resp = http.get("/loki/api/v1/query_range", params=params)
        assert resp.status_code == 200, resp.text
        lines = [line for stream in resp.json()["data"]["result"] for _, line in stream["values"]]
        assert lines == ["line 2"]
