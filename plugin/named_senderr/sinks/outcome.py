"""What every sink gives the driver: ``encode`` an event, ``send`` a batch, and an Outcome.

A sink sends exactly one request per ``send`` and says what became of each
item; the driver (queue/driver.py) alone decides when to try again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from named_senderr.errors import NamedSenderrError
from named_senderr.event import Event

if TYPE_CHECKING:  # stdout.py imports this module for `parse`: keep httpx out of its start-up
    from named_senderr.sinks.http import Reply


class SinkFailed(NamedSenderrError):
    """A sink cannot go on (rejected credentials, wrong URL, retries exhausted); not retryable."""


@dataclass
class Outcome:
    """The fate of one request's items: stored, to retry, dead, or the batch must be split."""

    delivered: int = 0
    duplicates: int = 0  # already stored by an earlier run or attempt (Elasticsearch 409 on create)
    retry: list[Any] = field(default_factory=list)
    dead: list[tuple[Any, str]] = field(default_factory=list)  # (item, the server's reason)
    too_large: bool = False  # 413: split the batch and send the halves
    fatal: str | None = None  # the sink cannot go on; nothing was stored
    error: str | None = None  # why items are retried, for the give-up message
    retry_after: float | None = None
    unanswered: bool = False  # no answer at all: the server may have stored the batch before the cut


def retry_all(items: list[Any], error: str, retry_after: float | None = None) -> Outcome:
    return Outcome(retry=list(items), error=error, retry_after=retry_after)


def unanswered(items: list[Any], error: str) -> Outcome:
    """Retry ``items``, but ask the store first what it kept: the request may have arrived."""
    return Outcome(retry=list(items), error=error, unanswered=True)


def dead_all(items: list[Any], reason: str) -> Outcome:
    return Outcome(dead=[(item, reason) for item in items])


def whole_request(reply: Reply, items: list[Any], reason: str) -> Outcome | None:
    """What a store that takes or refuses a request whole (Loki, VictoriaLogs) means alike; None: its own.

    ``reason`` is the start of the answer's body, for the messages.
    """
    status = reply.status
    if reply.fatal:
        return Outcome(fatal=reply.fatal)
    if status == 0:
        return unanswered(items, reply.error or "no answer")
    if 200 <= status < 300:
        return Outcome(delivered=len(items))
    if status == 413:
        return Outcome(too_large=True, error=f"413: {reason}")
    if status == 429 or status >= 500:
        return retry_all(items, f"{status}: {reason}", reply.retry_after)
    return None


class Sink(Protocol):
    """``encode`` runs on the reading thread; ``send`` on the sink's worker threads."""

    name: str
    workers: int

    def encode(self, event: Event) -> tuple[Any, int]:
        """The item for one event and its size in bytes, for batching."""

    def send(self, items: list[Any]) -> Outcome:
        """One request for ``items``; never sleeps, never loops, never raises for a server's answer."""

    def dead_record(self, item: Any) -> dict:
        """What the dead-letter file keeps of ``item`` (JSON types or orjson.Fragment)."""

    def drop_stored(self, items: list[Any]) -> list[Any]:
        """``items`` without those the store already holds: for a batch that may have been sent before a crash."""

    def close(self) -> None: ...


@runtime_checkable
class Searchable(Protocol):
    """A store that shows new documents only after a refresh (Elasticsearch, OpenSearch: ``refresh_interval``)."""

    def make_searchable(self) -> str | None:
        """Refresh what this run wrote, so a query right after a one-shot run sees it; a warning if it could not."""
