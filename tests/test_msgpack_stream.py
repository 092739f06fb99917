"""MsgpackOut: the records of a batch reach the pipe whole and in order, whatever their text holds."""

from __future__ import annotations

import os

import msgpack

from named_senderr.sinks.msgpack_stream import MsgpackOut


def written(records: list[list[dict]]) -> list[dict]:
    """What Fluentd's streaming parser reads back after each batch was written and flushed."""
    read_fd, write_fd = os.pipe()
    out = MsgpackOut(write_fd)
    for batch in records:
        out.write_all(batch)
        assert out.flush()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        return list(msgpack.Unpacker(pipe, raw=False, unicode_errors="surrogateescape", strict_map_key=False))


def test_a_batch_comes_back_as_its_records_in_order():
    batches = [[{"n": n, "reason": "would_block"} for n in range(start, start + 3)] for start in (0, 3)]
    assert written(batches) == [record for batch in batches for record in batch]


def test_a_text_that_kept_a_raw_byte_is_written_with_that_byte_and_its_batch_stays_whole():
    kept = b"ns\xff1".decode("utf-8", "surrogateescape")  # how the unpacker keeps a byte that is not UTF-8
    records = written([[{"host": "ns1"}, {"host": kept}, {"host": "ns2"}], [{"host": "ns3"}]])
    assert records == [{"host": "ns1"}, {"host": kept}, {"host": "ns2"}, {"host": "ns3"}]


def test_the_event_count_is_the_records_written():
    read_fd, write_fd = os.pipe()
    out = MsgpackOut(write_fd)
    out.write_all(iter([{"n": 1}, {"n": 2}]))  # any iterable, as the delivery renders lazily
    assert out.events == 2
    os.close(read_fd)
    os.close(write_fd)
