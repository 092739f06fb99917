"""Access to the corpus, the parser's specification, copied from the team's shared/.

Raw bytes that JSON cannot hold are written in the corpus as ``<0xHH>``;
``line_bytes`` turns them back into the bytes a log file would contain.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(os.environ.get("NAMED_SENDERR_TEST_DATA", Path(__file__).resolve().parent / "data"))
CORPUS = DATA / "corpus" / "bind-send-errors.jsonl"
REAL_NAMED = DATA / "real-named"

# Keys every parser must match exactly, and keys that must match when present.
REQUIRED_KEYS = ("client_ip", "client_port", "qname", "view", "reason_text", "reason", "message_kind")
OPTIONAL_KEYS = (
    "client_ptr", "signer", "host", "program", "pid", "category", "severity", "repeat_count", "scope", "zone", "zone_class",
    "destination_ip", "destination_port",
)  # fmt: skip

# Where the corpus contradicts itself we follow the majority and say so here.
# Three lines with a %scope expect the scope split off into "scope" (an ECS
# client.ip must be a plain address for the `ip` type); this one keeps it.
CORPUS_CORRECTIONS = {
    "25-Jan-2010 14:20:14.089 debug 3: client @0x5eadb375 fe80::abf9%2#28049": {
        "client_ip": "fe80::abf9",
        "scope": "2",
    },
}


@dataclass(frozen=True)
class Case:
    line: str
    expect: dict | None
    era: str

    @property
    def line_bytes(self) -> bytes:
        return re.sub(rb"<0x([0-9A-Fa-f]{2})>", lambda m: bytes([int(m.group(1), 16)]), self.line.encode("utf-8"))

    @property
    def id(self) -> str:
        return f"{self.era[:40]}: {self.line[:60]}"


def load_cases() -> list[Case]:
    cases = []
    for text in CORPUS.read_text(encoding="utf-8").splitlines():
        record = json.loads(text)
        expect = record["expect"]
        if expect is not None:
            for prefix, fix in CORPUS_CORRECTIONS.items():
                if record["line"].startswith(prefix):
                    expect = {**expect, **fix}
        cases.append(Case(record["line"], expect, record["era"]))
    return cases
