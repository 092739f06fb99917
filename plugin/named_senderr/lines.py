"""What a source hands the engine: raw lines with their provenance, in batches with one acknowledgement.

A batch's ``ack`` moves its source's position (a file checkpoint, a Forward ack);
the engine calls it only once the next stage durably holds the batch's events.
These records sit below the engine so that sources need not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Ack = Callable[[], None]


def no_ack() -> None:
    """For sources with no position to move (files read once, stdin)."""


@dataclass(slots=True)
class Line:
    """One raw line and where it came from; ``oversize``: only its head was kept."""

    data: bytes
    file: str | None = None
    offset: int | None = None
    host: str | None = None  # the sender's host name, where the transport carries one
    oversize: bool = False
    time: str | None = None  # RFC 3339: the transport's time (a Forward entry's) for a line logged without one


@dataclass
class Batch:
    """Lines of one source, acknowledged together."""

    lines: list[Line]
    ack: Ack = field(default=no_ack)


class Emit(Protocol):
    def __call__(self, batch: Batch, *, wait: bool = True) -> bool:
        """Hand ``batch`` to the pipeline; False when it was refused (full, stopping): do not move past it.

        With ``wait`` the call blocks while the pipeline is full; without it (network sources that must
        keep serving other peers) a full pipeline refuses at once.
        """
        ...
