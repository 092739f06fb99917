"""Loki: JSON push with bounded labels, structured metadata and the flat record as the line.

Labels make streams, so only fields with few values may be labels (checked in
ship_config). Per-client fields go into structured metadata and the line.
Entries keep their original timestamps on every attempt: Loki drops an entry
whose stream, time and line it already has, so a retry or replay adds nothing.
``classify_push`` is pure: a Reply and the items in, an Outcome out.

VictoriaLogs serves the same push API under ``/insert`` (``loki+http://HOST:9428/insert``;
app/vlinsert/loki/loki.go:26 of v1.52.1). There the line's JSON becomes fields,
``_msg_field`` names the message (``message`` unless set), ``X-Scope-OrgID`` is
read as ``ACCOUNT[:PROJECT]`` (loki.go:70-80), and, with no Loki query API to ask
and no deduplication, a batch cut off by a crash or a lost answer may be stored twice.
"""

from __future__ import annotations

from operator import itemgetter
from urllib.parse import urlsplit

import orjson

from named_senderr.event import Event, to_flat
from named_senderr.normalize.timestamp import to_epoch_ns
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.http import HttpClient, Reply
from named_senderr.sinks.outcome import Outcome, dead_all, whole_request

PUSH_PATH = "/loki/api/v1/push"
QUERY_PATH = "/loki/api/v1/query_range"
QUERY_LIMIT = 5000  # Loki's default max_entries_limit_per_query
VICTORIALOGS_BASE = "/insert"  # VictoriaLogs' Loki push API is /insert/loki/api/v1/push
VICTORIALOGS_MSG_FIELD = "message"
METADATA_FIELDS = ("client_ip", "client_port", "qname", "view")
Item = tuple[tuple, int, bytes]  # (label values, time in ns, the entry as JSON: ["ns", line, {metadata}])


class LokiSink:
    """One Loki (or one tenant of it)."""

    def __init__(self, config: SinkConfig, ingest_time: str, client: HttpClient | None = None) -> None:
        self.name = config.name
        self.workers = config.workers
        headers = {"X-Scope-OrgID": config.tenant} if config.tenant else {}
        self._client = client or HttpClient(config, headers)
        self._labels = config.labels
        self._job = config.job
        self._metadata = config.structured_metadata
        self._ingest_ns = to_epoch_ns(ingest_time)
        victorialogs = urlsplit(config.url).path.endswith(VICTORIALOGS_BASE)
        msg_field = config.msg_field or (VICTORIALOGS_MSG_FIELD if victorialogs else None)
        self._params = {"_msg_field": msg_field} if msg_field else None
        self._asks_store = not victorialogs

    def encode(self, event: Event) -> tuple[Item, int]:
        """The entry is serialized here, once: a push only groups, sorts and joins entries."""
        flat = to_flat(event)
        moment = event.timestamp or event.ingested
        ns = to_epoch_ns(moment) if moment else self._ingest_ns
        key = tuple(self._job if name == "job" else flat[name] for name in self._labels)
        metadata = b""
        if self._metadata:
            fields = {name: str(flat[name]) for name in METADATA_FIELDS if flat[name] is not None}
            metadata = b"," + orjson.dumps(fields) if fields else b""
        # %-formatting makes a right-sized copy: orjson's own result keeps a buffer of several KB.
        encoded = b'["%d",%s%s]' % (ns, orjson.dumps(orjson.dumps(flat).decode()), metadata)
        return (key, ns, encoded), len(encoded)

    def send(self, items: list[Item]) -> Outcome:
        body = push_body(items, self._labels, self._job)
        return classify_push(self._client.post(PUSH_PATH, body, "application/json", self._params), items)

    def dead_record(self, item: Item) -> dict:
        key, ns, entry = item
        _, line, *metadata = orjson.loads(entry)
        labels = {n: v for n, v in zip(self._labels, key, strict=True) if v is not None}
        return {"labels": labels, "time_ns": ns, "structured_metadata": metadata[0] if metadata else None,
                "line": orjson.Fragment(line)}  # fmt: skip

    def drop_stored(self, items: list[Item]) -> list[Item]:
        """Ask Loki which of these entries it has (stream, time, line) and keep the others.

        Loki drops an identical entry only while the first is still in the
        stream's open head block, so a batch sent just before a crash could
        otherwise be stored twice. If the question fails, everything is sent; VictoriaLogs is not asked
        (it has no Loki query API), so there a replay may store entries twice.
        """
        if not self._asks_store:
            return items
        streams: dict[tuple, list[Item]] = {}
        for item in items:
            streams.setdefault(item[0], []).append(item)
        keep: list[Item] = []
        for key, entries in streams.items():
            labels = {n: v for n, v in zip(self._labels, key, strict=True) if v is not None} or {"job": self._job}
            stored = self._stored(labels, min(e[1] for e in entries), max(e[1] for e in entries))
            if stored is None:
                return items
            keep += [e for e in entries if (e[1], orjson.loads(e[2])[1]) not in stored]
        return keep

    def _stored(self, labels: dict, first_ns: int, last_ns: int) -> set[tuple[int, str]] | None:
        """Every (time, line) Loki holds for one stream between two times, page by page; None on failure."""
        selector = "{" + ",".join(f"{name}={orjson.dumps(str(value)).decode()}" for name, value in labels.items()) + "}"
        stored: set[tuple[int, str]] = set()
        start = first_ns
        while True:
            params = {"query": selector, "start": str(start), "end": str(last_ns + 1), "limit": str(QUERY_LIMIT),
                      "direction": "forward"}  # fmt: skip
            reply = self._client.request("GET", QUERY_PATH, params=params)
            if reply.status != 200:
                return None
            values = [v for stream in orjson.loads(reply.body)["data"]["result"] for v in stream["values"]]
            stored.update((int(v[0]), v[1]) for v in values)
            if len(values) < QUERY_LIMIT:
                return stored
            last = max(int(v[0]) for v in values)  # the next page starts at the last time seen (inclusive)
            if last == start:
                return None  # a whole page at one instant: paging by time cannot get past it
            start = last

    def close(self) -> None:
        self._client.close()


def push_body(items: list[Item], label_names: tuple[str, ...], job: str) -> bytes:
    """Group items by stream, each stream's entries sorted by time (stable: file order on ties)."""
    streams: dict[tuple, list[Item]] = {}
    for item in items:
        streams.setdefault(item[0], []).append(item)
    parts = []
    for key, entries in streams.items():
        entries.sort(key=itemgetter(1))
        labels = {name: value for name, value in zip(label_names, key, strict=True) if value is not None}
        values = b",".join(entry for _, _, entry in entries)
        parts.append(b'{"stream":%s,"values":[%s]}' % (orjson.dumps(labels or {"job": job}), values))
    return b'{"streams":[%s]}' % b",".join(parts)


def classify_push(reply: Reply, items: list) -> Outcome:
    """Loki takes or refuses a push whole: 2xx stored, 429/5xx retry, 413 split, 400 dead with Loki's reason."""
    status = reply.status
    reason = reply.text()
    if status == 400 and "exceeding -loki.maxRequestSize" in reason:  # VictoriaLogs says 400
        return Outcome(too_large=True, error=f"{status}: {reason}")
    outcome = whole_request(reply, items, reason)
    if outcome is not None:
        return outcome
    if status == 401 and "org id" in reason:
        return Outcome(fatal=f'401: {reason}; this Loki is multi-tenant: set tenant = "..." (sent as X-Scope-OrgID)')
    if status in (401, 403):
        return Outcome(fatal=f"{status}: {reason}; check username/password_env or bearer_token_env")
    if status in (404, 405):
        return Outcome(fatal=f"{status}: no push API at {PUSH_PATH} here ({reason}); check host, port and path")
    if status == 400 and reason.startswith("unsupported path requested"):
        return Outcome(fatal=f"400: {reason}; VictoriaLogs serves the Loki push API under /insert: "
                             "loki+http://HOST:9428/insert")  # fmt: skip
    if status == 400 and reason.startswith("cannot parse common params"):
        return Outcome(fatal=f"400: {reason}; VictoriaLogs reads tenant (X-Scope-OrgID) as ACCOUNT or "
                             "ACCOUNT:PROJECT, both numbers, e.g. tenant=12:0")  # fmt: skip
    return dead_all(items, f"{status}: {reason}")
