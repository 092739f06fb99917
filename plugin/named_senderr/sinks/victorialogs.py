"""VictoriaLogs: JSON lines to ``/insert/jsonline``, each entry's time its event's, a bounded stream set.

The query args name the fields (app/vlinsert/insertutil/common_params.go:51-62@v1.52.1): ``_msg_field``
(else every entry stores "missing _msg field"), ``_time_field`` (else ``_time`` is the ingest time) and
``_stream_fields``, checked in ship_config like Loki labels. Every entry carries ``job`` and a
deterministic id (sinks/ids.py): VictoriaLogs keeps every copy it is given, so before sending again a
batch that may have arrived (a crash, a lost answer) ``drop_stored`` asks LogsQL which of its ids exist.

What the server answers (app/vlinsert/jsonline/jsonline.go@v1.52.1): 200 once the lines are taken;
400 for bad parameters (:31-35) or when every line was unreadable (:88-91, 58-62); 429 when its disk
is full and it turned read-only (app/vlstorage/main.go:531-537). A single unreadable line among good
ones is skipped with 200 and a warning in its own log (:75-80): the lines made here are always JSON
with an RFC 3339 time. It also skips entries outside its retention window: the sink reads that
window from ``/flags`` once and dead-letters such entries with the reason (victorialogs_limits.py).
One silent drop remains the server's: a 200 after waiting past -insert.maxQueueDuration (1 min) for
an insert slot (jsonline.go:41-45), which the client's timeout (30 s by default) ends first.
``classify_insert`` is pure: a Reply and the items in, an Outcome out.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlencode

import orjson

from named_senderr.event import ECS_NAMES, Event
from named_senderr.normalize.timestamp import to_epoch_ns
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.http import HttpClient, Reply
from named_senderr.sinks.ids import event_id, identified
from named_senderr.sinks.outcome import Outcome, dead_all, whole_request
from named_senderr.sinks.victorialogs_limits import TimeLimits, parse_flags

INSERT_PATH = "/insert/jsonline"
QUERY_PATH = "/select/logsql/query"
# Makes rows still in the 1 s insert buffer searchable (lib/logstorage/datadb.go:977-980).
FLUSH_PATH = "/internal/force_flush"
FLAGS_PATH = "/flags"  # the flags set on its command line (lib/httpserver/httpserver.go:446-452 of VictoriaMetrics)
MAX_QUERY = 16_000  # -search.maxQueryLen is 16 KiB by default (app/vlselect/logsql/logsql.go:43)
ID_FIELDS = {"ecs": "event.id", "flat": "event_id"}
Item = tuple[str, int | None, bytes]  # (event id, event time in ns or None for the ingest time, the JSON line)


def field_name(name: str, form: str) -> str:
    """A flat-record field as VictoriaLogs shows it for ``form``: ``host`` or ``host.name``."""
    return ECS_NAMES[name] if form == "ecs" else name


def selector(config: SinkConfig) -> str:
    """The LogsQL filter for this sink's entries: a stream filter when job is a stream field (faster)."""
    job = orjson.dumps(config.job).decode()
    return f"{{job={job}}}" if "job" in config.stream_fields else f"job:={job}"


def tenant_headers(tenant: str | None) -> dict[str, str]:
    """``ACCOUNT[:PROJECT]`` as VictoriaLogs' AccountID and ProjectID headers (lib/logstorage/tenant_id.go:100-115)."""
    if not tenant:
        return {}
    account, _, project = tenant.partition(":")
    return {"AccountID": account, "ProjectID": project or "0"}


class VictoriaLogsSink:
    """One VictoriaLogs (or one tenant of it)."""

    def __init__(self, config: SinkConfig, ingest_time: str, client: HttpClient | None = None) -> None:
        self.name = config.name
        self.workers = config.workers
        self._client = client or HttpClient(config, tenant_headers(config.tenant))
        self._form = config.format
        self._job = config.job
        self._ingest_time = ingest_time
        self._id_field = ID_FIELDS[config.format]
        self._selector = selector(config)
        self.params = {
            "_msg_field": "message",
            "_time_field": field_name("timestamp", config.format),
            "_stream_fields": ",".join(field_name(f, config.format) for f in config.stream_fields),
        }
        self._cwd = os.getcwd()  # relative input paths resolve against it in the ids
        flags = self._client.request("GET", FLAGS_PATH)
        # Unknown (a -flagsAuthKey, a proxy without /flags, the server down now): nothing is refused here.
        self.limits = parse_flags(flags.body.decode("utf-8", "replace")) if flags.status == 200 else None

    def encode(self, event: Event) -> tuple[Item, int]:
        ident = event_id(event, self._cwd)
        record = identified(event, self._form, self._ingest_time, ident)
        record["job"] = self._job
        line = b"%s\n" % orjson.dumps(record)  # a right-sized copy: orjson's result keeps a buffer of several KB
        return (ident, to_epoch_ns(event.timestamp) if event.timestamp else None, line), len(line)

    def send(self, items: list[Item]) -> Outcome:
        """Entries the server would skip are dead here; the others go in one request."""
        refused, items = outside(self.limits, items, time.time_ns())
        if not items:
            return Outcome(dead=refused)
        body = b"".join(line for _, _, line in items)
        # Not form-encoded: VictoriaLogs would read such a body as query args and store nothing.
        outcome = classify_insert(self._client.post(INSERT_PATH, body, "application/stream+json", self.params), items)
        if not (outcome.fatal or outcome.too_large):  # else the whole batch is abandoned or split and sent again
            outcome.dead.extend(refused)
        return outcome

    def dead_record(self, item: Item) -> dict:
        return {"event_id": item[0], "document": orjson.Fragment(item[2].rstrip(b"\n"))}

    def drop_stored(self, items: list[Item]) -> list[Item]:
        """Ask which of these ids VictoriaLogs holds, a few hundred ids a query, and keep the others.

        The flush first makes entries of the last second searchable; a server that refuses it (an auth
        key set) still answers, only without those. If a question fails, everything is sent.
        """
        self._client.request("GET", FLUSH_PATH)
        start, end = id_window(items, time.time_ns())
        stored: set[str] = set()
        for query in id_queries(self._selector, self._id_field, [item[0] for item in items]):
            body = urlencode({"query": query, "start": str(start), "end": str(end)}).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            reply = self._client.request("POST", QUERY_PATH, body, headers)
            if reply.status != 200:
                return items
            stored.update(orjson.loads(line)[self._id_field] for line in reply.body.splitlines() if line)
        return [item for item in items if item[0] not in stored]

    def close(self) -> None:
        self._client.close()


def outside(limits: TimeLimits | None, items: list[Item], now_ns: int) -> tuple[list[tuple[Item, str]], list[Item]]:
    """(items the server would skip, with why; the others). An item stored at its ingest time always fits."""
    if limits is None:
        return [], items
    refused, kept = [], []
    for item in items:
        why = limits.refusal(item[1], now_ns) if item[1] is not None else None
        if why:
            refused.append((item, why))
        else:
            kept.append(item)
    return refused, kept


def id_window(items: list[Item], now_ns: int) -> tuple[int, int]:
    """The seconds to search: the items' times, or up to now when one was stored at its ingest time."""
    times = [t for _, t, _ in items if t is not None]
    if len(times) < len(items):
        return 0, now_ns // 1_000_000_000 + 3600
    return min(times) // 1_000_000_000, max(times) // 1_000_000_000 + 1


def id_queries(where: str, field: str, ids: list[str], limit: int = MAX_QUERY) -> list[str]:
    """LogsQL ``in(...)`` queries for ``ids``, each at most ``limit`` bytes, each answering one line per id found."""
    head, tail = f"{where} {field}:in(", f") | uniq by ({field})"
    queries: list[str] = []
    chunk: list[str] = []
    size = len(head) + len(tail)
    for ident in ids:
        quoted = f'"{ident}"'
        if chunk and size + len(quoted) + 1 > limit:
            queries.append(head + ",".join(chunk) + tail)
            chunk, size = [], len(head) + len(tail)
        chunk.append(quoted)
        size += len(quoted) + 1
    if chunk:
        queries.append(head + ",".join(chunk) + tail)
    return queries


def classify_insert(reply: Reply, items: list) -> Outcome:
    """200 stored; 429/5xx retry; 400 for the lines dead, for the parameters fatal; the rest fatal."""
    status = reply.status
    reason = reply.text()
    outcome = whole_request(reply, items, reason)
    if outcome is not None:
        return outcome
    if status == 400 and reason.startswith("cannot process jsonline request"):
        return dead_all(items, f"400: {reason}")
    if status == 400:
        return Outcome(fatal=f"400: the request's parameters were refused ({reason}); check tenant and stream_fields")
    if status in (401, 403):
        return Outcome(fatal=f"{status}: {reason}; check username/password_env or bearer_token_env")
    if status in (404, 405):
        return Outcome(fatal=f"{status}: no JSON lines API at {INSERT_PATH} here ({reason}); check host, port and path")
    return Outcome(fatal=f"{status} from something in front of VictoriaLogs: {reason}")
