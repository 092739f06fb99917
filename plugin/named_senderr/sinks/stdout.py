"""NDJSON to a byte stream: the ``parse`` command's output and the ``stdout:`` sink."""

from __future__ import annotations

from typing import BinaryIO

import orjson

_BATCH = 512


class NdjsonWriter:
    """Buffers encoded lines and writes them in batches; stdout carries data only."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    def write(self, record: dict) -> None:
        self._pending.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._stream.write(b"".join(self._pending))
            self._pending.clear()
        self._stream.flush()
