"""The stages between parsing and the delivery, wired as a graph, and which sinks get which events.

Every command line preset is one chain (``chain``): every source into the
stages one after another, the last one's events to every sink. A ``run
--config`` file may branch: a stage or a sink reads any sources and stages
(fan-in), and any number of them may read one (fan-out). A batch enters at
its source's node; each stage, in an order where its inputs come first,
processes what its inputs passed on in this batch. A stage that shares its
input with other readers gets copies, so that a stage rewriting events in
place (privacy) never changes what another branch sees. Each event then goes
to the sinks that read the node it came out of: its ``Route``. When every
sink reads the same nodes, there is no route to tell (``routes`` None) and
the delivery is exactly the chain's.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from named_senderr.engine.contracts import Route, Stage
from named_senderr.event import Event

ANY = ""  # what a chain's first stage reads: every source's events
Delivered = tuple[list[Event], list[Route] | None]  # the events for the delivery, and the sinks of each (None: all)


@dataclass(frozen=True)
class Node:
    """A stage by its name (``transforms.NAME``) and the names it reads (``sources.NAME``, ``transforms.NAME``)."""

    name: str
    stage: Stage
    inputs: tuple[str, ...]


@dataclass
class Topology:
    """``nodes`` in an order where inputs come first; ``sinks``: the names each sink reads, in delivery order.

    ``sinks`` None: every sink reads the last node (the sources themselves when there is none).
    """

    nodes: Sequence[Node]
    sinks: Sequence[tuple[str, ...]] | None = None
    _shared: frozenset[str] = field(init=False)  # outputs with more than one reader
    _routed: bool = field(init=False)  # the sinks do not all read the same nodes

    def __post_init__(self) -> None:
        readers = Counter(name for node in self.nodes for name in node.inputs)
        readers.update(name for reads in self.sinks or () for name in reads)
        self._shared = frozenset(name for name, count in readers.items() if count > 1)
        self._routed = self.sinks is not None and len({frozenset(reads) for reads in self.sinks}) > 1

    @classmethod
    def chain(cls, stages: Sequence[Stage]) -> Topology:
        names = [ANY, *(str(n) for n in range(len(stages)))]
        return cls([Node(names[n + 1], stage, (names[n],)) for n, stage in enumerate(stages)])

    def process(self, origin: str, events: list[Event], seq: int) -> Delivered:
        """The parsed events of batch ``seq`` from the source named ``origin``, through every stage."""
        return self._run({origin: events, ANY: events}, seq, flush=None)

    def flush(self, final: bool, seq: int) -> Delivered:
        """What the stages let go of now (all of it when ``final``), through the stages after them.

        ``seq`` is the oldest batch any stage held: the stages after and the delivery hold these events for it.
        """
        return self._run({}, seq, flush=final)

    def rollback(self) -> None:
        """Every stage takes back the batch it last took (the delivery refused it: it will come again)."""
        for node in self.nodes:
            node.stage.rollback()

    def oldest_held(self) -> int | None:
        return min((seq for node in self.nodes if (seq := node.stage.oldest_held()) is not None), default=None)

    def _run(self, outputs: dict[str, list[Event]], seq: int, flush: bool | None) -> Delivered:
        for node in self.nodes:
            feed = _joined(outputs, node.inputs)
            if feed and not self._shared.isdisjoint(node.inputs):
                feed = [copy.copy(event) for event in feed]
            out = node.stage.process(feed, seq) if feed else []
            if flush is not None:
                out = [*out, *node.stage.flush(flush)]
            outputs[node.name] = out
        return self._delivered(outputs)

    def _delivered(self, outputs: dict[str, list[Event]]) -> Delivered:
        if not self._routed:
            reads = self.sinks[0] if self.sinks else (self.nodes[-1].name if self.nodes else ANY,)
            return _joined(outputs, reads), None
        assert self.sinks is not None
        events: dict[int, Event] = {}  # an event two sinks read is delivered once, routed to both
        routes: dict[int, set[int]] = {}
        for sink, reads in enumerate(self.sinks):
            for event in _joined(outputs, reads):
                events.setdefault(id(event), event)
                routes.setdefault(id(event), set()).add(sink)
        return list(events.values()), [frozenset(routes[key]) for key in events]


def _joined(outputs: dict[str, list[Event]], names: Sequence[str]) -> list[Event]:
    """The events the nodes ``names`` passed on (the one list itself when there is one: a chain copies nothing)."""
    if len(names) == 1:
        return outputs.get(names[0], [])
    return [event for name in names for event in outputs.get(name, ())]
