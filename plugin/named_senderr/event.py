"""The one Event that flows through every stage, and its two renderings.

``to_ecs`` is what goes to Elasticsearch/OpenSearch (Elastic Common Schema);
``to_flat`` is the flat record for stdout, Loki and Fluent peers. Both are
plain dicts of JSON types, built field by field so the hot path stays cheap.
``ecs_json`` is ``orjson.dumps(to_ecs(...))`` byte for byte without the dict:
the parts every event of a message kind and reason shares are encoded once.
Both ``ecs_json`` and ``to_flat`` are the C ones (_event_json.c) where that was
built, else the Python ``ecs_json_reference`` and ``to_flat_reference``, which
the C ones mirror and hand every rare case to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Protocol

import orjson

from named_senderr.native import load
from named_senderr.reasons import hint

ECS_VERSION = "8.17.0"
DATASET = "bind.send_error"

_ACTIONS = {
    "error_sending_response": "error-sending-response",
    "send_failed": "send-failed",
    "udp_send_failed": "udp-send-failed",
    "internal_send_failed": "internal-send-failed",
    "send_exceeded_maximum_size": "send-exceeded-maximum-size",
    "transfer_send_failed": "transfer-send-failed",
}
# Shared, never mutated: every ECS document refers to the same small objects.
_CATEGORY = ["network"]
_TYPE = ["connection", "error"]
_ECS = {"version": ECS_VERSION}
# The ECS name of each flat-record field, dotted the way stores that flatten nested JSON (VictoriaLogs) show it.
ECS_NAMES = {
    "timestamp": "@timestamp", "reason": "event.reason", "reason_text": "error.message", "hint": "bind.hint",
    "client_ip": "client.ip", "client_port": "client.port", "scope": "bind.scope", "qname": "dns.question.name",
    "view": "bind.view",
    "signer": "bind.signer", "client_ptr": "bind.client_ptr", "message_kind": "bind.message_kind",
    "repeat_count": "bind.repeat_count", "host": "host.name", "program": "process.name", "pid": "process.pid",
    "category": "log.logger", "severity": "log.level", "file": "log.file.path", "offset": "log.offset",
    "message": "message", "job": "job", "zone": "bind.zone", "zone_class": "bind.zone_class",
    "destination_ip": "destination.ip", "destination_port": "destination.port",
}  # fmt: skip


@dataclass(slots=True)
class Event:
    """A named send error. ``timestamp`` is RFC 3339 UTC or None when the line had none."""

    message_kind: str
    reason: str
    reason_text: str
    message: str
    original: str
    timestamp: str | None = None
    timestamp_valid: bool = True
    client_ip: str | None = None
    client_port: int | None = None
    scope: str | None = None
    client_ptr: str | None = None
    qname: str | None = None
    view: str | None = None
    signer: str | None = None
    netmgr_ptr: str | None = None
    # An outgoing zone transfer's zone and class, as xfrout logs them (bind.zone, not dns.question.name:
    # the prefix's qname keeps that, and 9.0-9.1 log no class).
    zone: str | None = None
    zone_class: str | None = None
    repeat_count: int = 1
    host: str | None = None
    program: str | None = None
    pid: int | None = None
    category: str | None = None
    severity: str | None = None
    priority: int | None = None
    facility: str | None = None
    syslog_severity: str | None = None
    container: str | None = None
    file: str | None = None
    offset: int | None = None
    # Set only on a rolled-up event (normalize/rollup.py): the window it covers.
    first_seen: str | None = None
    last_seen: str | None = None
    rollup_window: float | None = None
    ingested: str | None = None  # when the pipeline took the line in: the time of an event whose line had none
    # An internal_send line's address: a client, or (9.16) a server an outbound query went to. After
    # ``ingested``, so that a disk-queue record of an earlier version still reads (queue/consumer.py).
    destination_ip: str | None = None
    destination_port: int | None = None


def to_flat_reference(event: Event) -> dict:
    """The flat record: the same keys on every event, None where absent (rollups add three)."""
    flat = {
        "timestamp": event.timestamp,
        "reason": event.reason,
        "reason_text": event.reason_text,
        "hint": hint(event.reason, event.message_kind),
        "client_ip": event.client_ip,
        "client_port": event.client_port,
        "scope": event.scope,
        "qname": event.qname,
        "view": event.view,
        "signer": event.signer,
        "client_ptr": event.client_ptr,
        "message_kind": event.message_kind,
        "repeat_count": event.repeat_count,
        "host": event.host,
        "program": event.program,
        "pid": event.pid,
        "category": event.category,
        "severity": event.severity,
        "file": event.file,
        "offset": event.offset,
        "message": event.message,
        "zone": event.zone,
        "zone_class": event.zone_class,
        "destination_ip": event.destination_ip,
        "destination_port": event.destination_port,
    }
    if event.rollup_window is not None:
        flat |= {"count": event.repeat_count, "first_seen": event.first_seen, "last_seen": event.last_seen}
    return flat


def ingest_now() -> str:
    """Now, RFC 3339 UTC in milliseconds: the ingest time of the lines taken in now."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_ecs(event: Event, ingest_time: str) -> dict:
    """The ECS document; the event's ``ingested`` (else ``ingest_time``) stands in for a line without a time."""
    bind = {
        "message_kind": event.message_kind,
        "hint": hint(event.reason, event.message_kind),
        "repeat_count": event.repeat_count,
    }
    doc: dict = {
        "@timestamp": event.timestamp or event.ingested or ingest_time,
        "message": event.message,
        "event": {
            "original": event.original,
            "kind": "event",
            "category": _CATEGORY,
            "type": _TYPE,
            "outcome": "failure",
            "action": _ACTIONS[event.message_kind],
            "dataset": DATASET,
            "module": "bind",
            "reason": event.reason,
        },
        "error": {"message": event.reason_text},
        "ecs": _ECS,
        "bind": bind,
    }
    if event.client_ip is not None:
        doc["client"] = {"ip": event.client_ip, "port": event.client_port, "address": event.client_ip}
    if event.destination_ip is not None:
        doc["destination"] = {"ip": event.destination_ip, "port": event.destination_port}
    related = [ip for ip in (event.client_ip, event.destination_ip) if ip is not None]
    if related:
        doc["related"] = {"ip": related}
    if event.qname is not None:
        doc["dns"] = {"question": {"name": event.qname}}
    if event.host is not None:
        doc["host"] = {"name": event.host}
    if event.program is not None or event.pid is not None:
        doc["process"] = {"name": event.program, "pid": event.pid}
    log: dict = {}
    level = event.severity or event.syslog_severity
    if level is not None:
        log["level"] = level
    if event.category is not None:
        log["logger"] = event.category
    if event.file is not None:
        log["file"] = {"path": event.file}
    if event.offset is not None:
        log["offset"] = event.offset
    if event.priority is not None:
        log["syslog"] = {"priority": event.priority}
    if log:
        doc["log"] = log
    if event.container is not None:
        doc["container"] = {"name": event.container}
    for key in ("view", "signer", "client_ptr", "netmgr_ptr", "scope", "zone", "zone_class"):
        value = getattr(event, key)
        if value is not None:
            bind[key] = value
    if not event.timestamp_valid or event.timestamp is None:
        bind["timestamp_valid"] = False
    if event.rollup_window is not None:
        doc["event"]["start"], doc["event"]["end"] = event.first_seen, event.last_seen
        bind["rollup"] = {"count": event.repeat_count, "window_seconds": event.rollup_window}
    return doc


_dumps = orjson.dumps
_CACHE_LIMIT = 1024
# (message kind, reason, reason text) -> the encoded JSON from after event.original up to bind.repeat_count's value.
_shared: dict[tuple[str, str, str], bytes] = {}
_BIND_KEYS = tuple((key, b',"%s":' % key.encode()) for key in ("view", "signer", "client_ptr", "netmgr_ptr", "scope",
                                                             "zone", "zone_class"))  # fmt: skip


def _shared_part(kind: str, reason: str, reason_text: str) -> bytes:
    key = (kind, reason, reason_text)
    part = _shared.get(key)
    if part is None:
        hint_text = hint(reason, kind)  # first, as to_ecs: an unknown reason raises the same KeyError
        part = b"".join((
            b',"kind":"event","category":["network"],"type":["connection","error"],"outcome":"failure","action":',
            _dumps(_ACTIONS[kind]), b',"dataset":', _dumps(DATASET), b',"module":"bind","reason":', _dumps(reason),
            b'},"error":{"message":', _dumps(reason_text), b'},"ecs":', _dumps(_ECS), b',"bind":{"message_kind":',
            _dumps(kind), b',"hint":', _dumps(hint_text), b',"repeat_count":',
        ))  # fmt: skip
        if len(_shared) >= _CACHE_LIMIT:
            _shared.clear()
        _shared[key] = part
    return part


def ecs_json_reference(event: Event, ingest_time: str, newline: bool = False) -> bytes:
    """``orjson.dumps(to_ecs(event, ingest_time))``, the same bytes at a fraction of the cost (tests/test_event.py).

    ``newline`` ends it in ``\\n``, as ``orjson.OPT_APPEND_NEWLINE`` does: an NDJSON line without another copy.
    """
    if event.rollup_window is not None:  # a rollup's few events take the reference path
        return _dumps(to_ecs(event, ingest_time), option=orjson.OPT_APPEND_NEWLINE if newline else None)
    dumps = _dumps
    parts = [
        b'{"@timestamp":', dumps(event.timestamp or event.ingested or ingest_time),
        b',"message":', dumps(event.message), b',"event":{"original":', dumps(event.original),
        _shared_part(event.message_kind, event.reason, event.reason_text), dumps(event.repeat_count),
    ]  # fmt: skip
    for key, name in _BIND_KEYS:
        value = getattr(event, key)
        if value is not None:
            parts += (name, dumps(value))
    if not event.timestamp_valid or event.timestamp is None:
        parts.append(b',"timestamp_valid":false')
    parts.append(b"}")
    related = b""
    if event.client_ip is not None:
        ip = related = dumps(event.client_ip)
        parts += (b',"client":{"ip":', ip, b',"port":', dumps(event.client_port), b',"address":', ip, b"}")
    if event.destination_ip is not None:
        ip = dumps(event.destination_ip)
        parts += (b',"destination":{"ip":', ip, b',"port":', dumps(event.destination_port), b"}")
        related = related + b"," + ip if related else ip
    if related:
        parts += (b',"related":{"ip":[', related, b"]}")
    if event.qname is not None:
        parts += (b',"dns":{"question":{"name":', dumps(event.qname), b"}}")
    if event.host is not None:
        parts += (b',"host":{"name":', dumps(event.host), b"}")
    if event.program is not None or event.pid is not None:
        parts += (b',"process":{"name":', dumps(event.program), b',"pid":', dumps(event.pid), b"}")
    log: list[bytes] = []
    level = event.severity or event.syslog_severity
    if level is not None:
        log += (b'"level":', dumps(level))
    if event.category is not None:
        log += (b',"logger":' if log else b'"logger":', dumps(event.category))
    if event.file is not None:
        log += (b',"file":{"path":' if log else b'"file":{"path":', dumps(event.file), b"}")
    if event.offset is not None:
        log += (b',"offset":' if log else b'"offset":', dumps(event.offset))
    if event.priority is not None:
        log += (b',"syslog":{"priority":' if log else b'"syslog":{"priority":', dumps(event.priority), b"}")
    if log:
        parts += (b',"log":{', *log, b"}")
    if event.container is not None:
        parts += (b',"container":{"name":', dumps(event.container), b"}")
    parts.append(b"}\n" if newline else b"}")
    return b"".join(parts)


class EcsJson(Protocol):
    """What callers see as ``ecs_json``: either encoder, the same call."""

    def __call__(self, event: Event, ingest_time: str, newline: bool = False) -> bytes: ...


class ToFlat(Protocol):
    """What callers see as ``to_flat``: either builder, the same call."""

    def __call__(self, event: Event) -> dict: ...


def _compiled() -> ModuleType | None:
    """The C module where it was built (named_senderr/native.py), bound to what it reads and falls back to."""
    compiled = load("named_senderr._event_json")
    if compiled is not None:
        compiled.bind(Event, _shared_part, ecs_json_reference, hint, to_flat_reference)
    return compiled


_native = _compiled()
ecs_json: EcsJson = ecs_json_reference if _native is None else _native.ecs_json
to_flat: ToFlat = to_flat_reference if _native is None else _native.to_flat
