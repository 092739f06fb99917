"""Before the Loki sink sends a batch again it asks Loki what it kept, on answers shaped as Loki documents them.

No Loki runs in this suite (it is AGPL) and VictoriaLogs, the real server of the push tests, has no Loki
query API, so ``LokiStore`` plays Loki: it keeps what is pushed (an identical stream, time and line once)
and answers ``GET /loki/api/v1/query_range`` the way Loki's HTTP API reference
(docs/sources/reference/loki-http-api.md) describes it: ``start`` <= time < ``end``, oldest first for
``direction=forward``, at most ``limit`` entries, as
``{"status":"success","data":{"resultType":"streams","result":[{"stream":{...},"values":[["<ns>","<line>"]]}]}}``,
with structured metadata among a stream's labels (Loki 3 without the categorize-labels flag).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks import loki
from named_senderr.sinks.loki import LokiSink
from tests.faults import FaultServer, Reply, Request
from tests.test_ship_faults import SAMPLE_EVENTS, ship
from tests.test_sink_elasticsearch import event

MAX_QUERIES = 50  # then every question fails: a sink asking in a loop ends, and the test counting queries fails
MATCHER = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*")')


class LokiStore:
    """A FaultServer plan that stores pushes and answers queries as Loki does (``queries=False``: answers 500)."""

    def __init__(self, queries: bool = True) -> None:
        self.entries: set[tuple[tuple[tuple[str, str], ...], int, str]] = set()
        self.answers_queries = queries
        self.queries: list[dict[str, str]] = []

    def __call__(self, request: Request, n: int) -> Reply:
        if request.method == "POST":
            for stream in orjson.loads(request.body)["streams"]:
                for ns, line, *metadata in stream["values"]:
                    labels = {**stream["stream"], **(metadata[0] if metadata else {})}
                    self.entries.add((tuple(sorted(labels.items())), int(ns), line))
            return Reply(204)
        params = dict(parse_qsl(urlsplit(request.path).query))
        self.queries.append(params)
        if not self.answers_queries or len(self.queries) > MAX_QUERIES:
            return Reply(500, b"query failed")
        wanted = {(name, orjson.loads(value)) for name, value in MATCHER.findall(params["query"])}
        start, end = int(params["start"]), int(params["end"])
        hits = sorted((e for e in self.entries if wanted <= set(e[0]) and start <= e[1] < end), key=lambda e: e[1])
        streams: dict[tuple, list[list[str]]] = {}
        for labels, ns, line in hits[: int(params["limit"])]:
            streams.setdefault(labels, []).append([str(ns), line])
        result = [{"stream": dict(labels), "values": values} for labels, values in streams.items()]
        body = {"status": "success", "data": {"resultType": "streams", "result": result, "stats": {}}}
        return Reply(200, orjson.dumps(body), {"Content-Type": "application/json"})


def pushes(server: FaultServer) -> int:
    return sum(r.method == "POST" for r in server.requests)


def test_batch_whose_answer_was_lost_after_loki_stored_it_is_not_sent_again(tmp_path: Path) -> None:
    store = LokiStore()
    with FaultServer(store, lose_answer=frozenset({0})) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    counters = result.sinks[f"loki+{server.url}"]
    assert len(store.entries) == SAMPLE_EVENTS and pushes(server) == 1 and store.queries
    assert (counters.sent, counters.duplicates, result.failures) == (0, SAMPLE_EVENTS, [])


def test_batch_cut_before_loki_stored_it_is_sent_whole_after_asking(tmp_path: Path) -> None:
    store = LokiStore()
    with FaultServer(store, cut=frozenset({0})) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    assert len(store.entries) == SAMPLE_EVENTS and pushes(server) == 1 and store.queries
    assert result.sinks[f"loki+{server.url}"].sent == SAMPLE_EVENTS


def test_answers_are_read_page_by_page_until_a_short_page(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(loki, "QUERY_LIMIT", 4)
    store = LokiStore()
    with FaultServer(store, lose_answer=frozenset({0})) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    starts_per_stream: dict[str, set[str]] = {}
    for query in store.queries:
        starts_per_stream.setdefault(query["query"], set()).add(query["start"])
    assert max(len(starts) for starts in starts_per_stream.values()) > 1  # a stream was read in several pages
    assert pushes(server) == 1 and result.sinks[f"loki+{server.url}"].duplicates == SAMPLE_EVENTS


def test_a_question_loki_fails_to_answer_sends_the_batch_again(tmp_path: Path) -> None:
    store = LokiStore(queries=False)
    with FaultServer(store, lose_answer=frozenset({0})) as server:
        result = ship(f"loki+{server.url}", tmp_path, max_events=100)
    assert pushes(server) == 2 and len(store.entries) == SAMPLE_EVENTS
    assert result.sinks[f"loki+{server.url}"].sent == SAMPLE_EVENTS


def test_a_full_page_at_one_instant_ends_the_question_and_everything_is_sent(monkeypatch) -> None:
    """Events without a time all get the run's ingest time; paging by time cannot get past such a page."""
    monkeypatch.setattr(loki, "QUERY_LIMIT", 3)
    store = LokiStore()
    with FaultServer(store) as server:
        sink = LokiSink(sink_from_url(f"loki+{server.url}", {}, "t", None), "2026-11-21T05:00:00.000Z")
        items = [sink.encode(event(timestamp=None, client_port=port))[0] for port in range(1000, 1005)]
        assert sink.send(items).delivered == 5
        assert sink.drop_stored(items) == items
        sink.close()
    assert len(store.queries) == 1


@pytest.mark.parametrize("stored", [0, 2])
def test_only_the_entries_loki_lacks_are_left_to_send(stored: int) -> None:
    store = LokiStore()
    with FaultServer(store) as server:
        sink = LokiSink(sink_from_url(f"loki+{server.url}", {}, "t", None), "2026-11-21T05:00:00.000Z")
        items = [sink.encode(event(timestamp=f"2026-11-21T04:48:3{i}.000Z"))[0] for i in range(4)]
        if stored:
            sink.send(items[:stored])
        assert sink.drop_stored(items) == items[stored:]
        sink.close()
