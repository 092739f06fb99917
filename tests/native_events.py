"""Events for the differential tests of the C event code (_event_json.c): real lines, generated logs, odd values.

Every comparison there is of outcomes, what a caller of either function sees: the
result, or the exception's type and arguments.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

from hypothesis import strategies as st

from named_senderr.event import _ACTIONS, Event
from tests.parsing import make_parser

ROOT = Path(__file__).resolve().parent.parent
FIELDS = [field.name for field in dataclasses.fields(Event)]
CLIENT_LINE = (
    "Feb 02 02:02:02 ns1 named[2222]: 21-Oct-2021 10:22:33.123 client: warning: "
    "client @0x7f8e3001c9a0 192.0.2.53#5300/key k1 (example.com): view ext: error sending response: would block"
)


def outcome(call: Callable[..., object], *args: object, **kwargs: object) -> object:
    """The result, or the exception's type and arguments."""
    try:
        return call(*args, **kwargs)
    except Exception as error:
        return type(error), error.args


def parsed(lines: list[bytes]) -> list[Event]:
    parser = make_parser()
    return [e for line in lines if isinstance(e := parser.parse_bytes(line), Event)]


def generated_events(bind: str, directory: Path) -> list[Event]:
    """The events of a 5,000-line log of ``bench/generate_log.py``, half of them send errors."""
    log = directory / "named.log"
    subprocess.run([sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", "5000", "--error-rate", "0.5",
                    "--bind", bind, "-o", str(log)], check=True)  # fmt: skip
    return parsed(log.read_bytes().splitlines())


def client_event(**changes: object) -> Event:
    return dataclasses.replace(
        make_parser().parse(CLIENT_LINE), **{"file": "/var/log/named.log", "offset": 4096} | changes
    )


class Overridden(Event):
    """A subclass whose message is a property: the C code reads the slots, so it leaves this to the reference."""

    @property
    def message(self) -> str:
        return "overridden"

    @message.setter
    def message(self, value: str) -> None:
        Event.message.__set__(self, value)  # the slot holds it; the reference reads the property


def overridden() -> Overridden:
    return Overridden(**{name: getattr(client_event(), name) for name in FIELDS})


class Text(str):
    """A str subclass: the C code leaves it to the reference."""


class Number(int):
    """An int subclass: likewise."""


# A value of any type for any field: the edges of each type, subclasses, and the kinds and reasons of the tables.
ODD = (st.floats(allow_nan=False) | st.booleans() | st.integers(2**63 - 2, 2**65) | st.integers(-(2**65), -(2**63) + 2)
       | st.builds(Text, st.text(max_size=5)) | st.builds(Number, st.integers(0, 99)) | st.lists(st.integers(), max_size=2)
       | st.just("") | st.just(0) | st.none() | st.text(max_size=5) | st.sampled_from(["unknown", *_ACTIONS]))  # fmt: skip


def repeat(call: Callable[..., object], events: list[Event], rounds: int, *args: object) -> None:
    """``call(event, *args)`` on each event, ``rounds`` times, whatever each call gives or raises."""
    for _ in range(rounds):
        for e in events:
            outcome(call, e, *args)


def counted(values: Iterable[object]) -> list[object]:
    """The values whose reference counts a leak would move: singletons and small ints are the interpreter's own."""
    return [v for v in values if not (v is None or isinstance(v, bool) or (isinstance(v, int) and -5 <= v <= 256))]


def memory_growth(calls: Callable[[int], None], rounds: int) -> int:
    """Bytes still held after ``calls(rounds)``, measured once the first rounds filled every memo and cache."""
    calls(2)
    tracemalloc.start()
    try:
        calls(100)
        before = tracemalloc.get_traced_memory()[0]
        calls(rounds)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
