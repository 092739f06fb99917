"""Elasticsearch and OpenSearch: ``_bulk`` NDJSON of ``create`` actions with deterministic ids.

Posted over our own pooled client rather than elasticsearch-py, which refuses
OpenSearch and sends headers older servers reject. ``create`` with the id of
sinks/ids.py makes every retry and replay idempotent: a 409 means the document
is already stored. ``classify_bulk`` is pure: a Reply and the items in, an
Outcome out.
"""

from __future__ import annotations

import os

import orjson

from named_senderr.event import Event, ecs_json
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.http import MAX_REASON, HttpClient, Reply
from named_senderr.sinks.ids import event_id_bytes
from named_senderr.sinks.outcome import Outcome, dead_all, retry_all, unanswered

# Only what classification reads: a replay of 5,000 documents answers a few KB, not a few MB.
BULK_PARAMS = {"filter_path": "errors,items.*.status,items.*.error"}
CREDENTIALS_FIX = "check username/password_env, api_key_env or bearer_token_env and the user's index privileges"


class BulkSink:
    """One index (or data stream) on one Elasticsearch or OpenSearch cluster."""

    def __init__(self, config: SinkConfig, ingest_time: str, client: HttpClient | None = None) -> None:
        self.name = config.name
        self.workers = config.workers
        self._client = client or HttpClient(config, {"Accept": "application/json"})
        self._path = f"/{config.index}/_bulk"
        self._refresh = f"/{config.index}/_refresh"
        self._ingest_time = ingest_time
        self._cwd = os.getcwd()  # relative input paths resolve against it in the ids

    def encode(self, event: Event) -> tuple[bytes, int]:
        """The action line and the ECS document, as one NDJSON item."""
        item = b'{"create":{"_id":"%s"}}\n%s' % (
            event_id_bytes(event, self._cwd),
            ecs_json(event, self._ingest_time, True),
        )
        return item, len(item)

    def send(self, items: list[bytes]) -> Outcome:
        reply = self._client.post(self._path, b"".join(items), "application/x-ndjson", BULK_PARAMS)
        return classify_bulk(reply, items)

    def dead_record(self, item: bytes) -> dict:
        action, _, document = item.partition(b"\n")
        return {"action": orjson.Fragment(action), "document": orjson.Fragment(document.rstrip(b"\n"))}

    def drop_stored(self, items: list[bytes]) -> list[bytes]:
        return items  # `create` with a deterministic _id answers 409 for what is already stored

    def make_searchable(self) -> str | None:
        reply = self._client.request("POST", self._refresh)
        if reply.status == 200 and not reply.fatal:
            return None
        return (
            f"{self.name}: refresh after the run failed ({reply.fatal or reply.error or error_reason(reply)}); "
            "the documents become searchable within the index's refresh_interval (5 s in the shipped template)"
        )

    def close(self) -> None:
        self._client.close()


def classify_bulk(reply: Reply, items: list) -> Outcome:
    """Sort the items of one ``_bulk`` request into stored, already there, retry, dead; or split or stop."""
    status = reply.status
    if reply.fatal:
        return Outcome(fatal=reply.fatal)
    if status == 0:
        return unanswered(items, reply.error or "no answer")
    if status == 413:
        return Outcome(too_large=True, error="413: request larger than the server's http.max_content_length")
    if status == 429 or status >= 500:
        return retry_all(items, f"{status}: {error_reason(reply)}", reply.retry_after)
    if status in (401, 403):
        return Outcome(fatal=f"{status}: {error_reason(reply)}; {CREDENTIALS_FIX}")
    if status in (404, 405):
        return Outcome(fatal=f"{status}: no _bulk API at this URL ({error_reason(reply)}); check host, port and path")
    if status != 200 and not _is_server_error(reply.body):
        # Not Elasticsearch's own error object: something in front (a proxy refusing the TLS client
        # certificate, an HTML error page) refused the request; the events are not at fault.
        return Outcome(fatal=f"{status} from something in front of the server: {error_reason(reply)}")
    if status != 200:
        return dead_all(items, f"{status}: {error_reason(reply)}")
    try:
        body = orjson.loads(reply.body)
        results = [next(iter(result.values())) for result in body.get("items", ())] if body.get("errors") else None
    except (orjson.JSONDecodeError, AttributeError, StopIteration):
        return Outcome(fatal=f"the answer to _bulk is not bulk JSON: {reply.text(200)!r}; is this Elasticsearch?")
    if results is None:
        return Outcome(delivered=len(items))
    if len(results) != len(items):
        return Outcome(fatal=f"_bulk answered {len(results)} items for {len(items)} sent")
    return _per_item(items, results, reply)


def _per_item(items: list, results: list[dict], reply: Reply) -> Outcome:
    outcome = Outcome()
    for item, result in zip(items, results, strict=True):
        status = result.get("status", 0)
        if 200 <= status < 300:
            outcome.delivered += 1
        elif status == 409:
            outcome.duplicates += 1
        elif status == 429 or status >= 500:
            outcome.retry.append(item)
            outcome.error = f"{status}: {_describe(result.get('error'), reply)}"
        else:
            outcome.dead.append((item, f"{status}: {_describe(result.get('error'), reply)}"))
    return outcome


def _is_server_error(body: bytes) -> bool:
    """An Elasticsearch/OpenSearch error answer: a JSON object with an ``error``."""
    try:
        return isinstance(orjson.loads(body).get("error"), dict | str)
    except (orjson.JSONDecodeError, AttributeError):
        return False


def error_reason(reply: Reply) -> str:
    """The server's own words, secrets redacted: ``type: reason`` from an error object, else the start of the body."""
    try:
        error = orjson.loads(reply.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if error is None:
        return reply.text()
    return _describe(error, reply)


def _describe(error: object, reply: Reply) -> str:
    """An error object in a line, secrets redacted before the cut so no piece of one is left."""
    if not isinstance(error, dict):
        return reply.redact(str(error))[:MAX_REASON]
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
    return reply.redact(text)[:MAX_REASON]
