"""Named counters for one run, read by --stats, the summary and the tests alike."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    inputs: int = 0
    unreadable_inputs: int = 0
    lines: int = 0
    bytes: int = 0
    candidates: int = 0
    undecodable_lines: int = 0
    oversize_lines: int = 0
    events_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return sum(self.events_by_reason.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def as_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "unreadable_inputs": self.unreadable_inputs,
            "lines": self.lines,
            "bytes": self.bytes,
            "candidates": self.candidates,
            "events": self.events,
            "events_by_reason": dict(self.events_by_reason.most_common()),
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason.most_common()),
            "undecodable_lines": self.undecodable_lines,
            "oversize_lines": self.oversize_lines,
        }


@dataclass
class QueueStats:
    """What the disk queue took, dropped (``when_full = "drop"``), cut off as torn at start, and found damaged."""

    queued: int = 0
    dropped: int = 0
    torn_bytes: int = 0
    damaged_bytes: int = 0  # skipped or cut: the events in them are lost
    replayed: int = 0  # events a restarted follower read again that the queue already held: not queued twice
    bytes: int = 0  # on disk, sampled when read
    pending: dict[str, bool] = field(default_factory=dict)  # per sink: unacknowledged events remain
