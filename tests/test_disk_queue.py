"""The disk queue on its own: records, cursors, segments, torn tails, the size bound."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.queue.consumer import decode_event, encode_event
from named_senderr.queue.disk import HEADER, DiskQueue, decode_records, encode_record
from named_senderr.ship_config import QueueConfig
from named_senderr.ship_load import load_ship_config


def payloads(n: int, size: int = 100) -> list[bytes]:
    return [f"{i:08d}".encode().ljust(size, b"x") for i in range(n)]


def read_all(queue: DiskQueue, reader: str) -> tuple[list[bytes], tuple[int, int]]:
    out: list[bytes] = []
    position = (0, 0)
    while True:
        records, position = queue.read(reader, 1000, 1 << 20)
        if not records:
            return out, position
        out.extend(records)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_records_round_trip_and_stop_at_a_torn_tail() -> None:
    data = b"".join(encode_record(p) for p in payloads(3))
    assert decode_records(data) == (payloads(3), len(data))
    assert decode_records(data[:-1]) == (payloads(2), len(data) - HEADER.size - 100)


def test_a_record_with_a_bad_crc_ends_the_valid_data() -> None:
    good, bad = encode_record(b"first"), bytearray(encode_record(b"second"))
    bad[-1] ^= 0xFF
    assert decode_records(good + bytes(bad)) == ([b"first"], len(good))


def test_an_event_survives_the_record_encoding() -> None:
    event = Event("error_sending_response", "would_block", "would block", "m", "orig", client_port=53, offset=7)
    assert decode_event(encode_event(event)) == event


def test_appended_records_are_read_back_after_reopening(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    queue.append(payloads(50))
    queue.close()
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert read_all(queue, "es")[0] == payloads(50)
    queue.close()


def test_an_acknowledged_cursor_survives_a_restart(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    queue.append(payloads(10))
    records, position = queue.read("es", 4, 1 << 20)
    queue.ack("es", position)
    queue.read("es", 4, 1 << 20)  # read but never acknowledged: delivered again after a restart
    queue.close()
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert records == payloads(4) and read_all(queue, "es")[0] == payloads(10)[4:]
    queue.close()


def test_a_torn_tail_is_cut_at_start_and_the_records_before_it_kept(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    queue.append(payloads(5))
    queue.close()
    segment = segment_files(tmp_path)[-1]
    segment.write_bytes(segment.read_bytes() + encode_record(b"half written")[:9])
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert queue.torn_bytes == 9 and read_all(queue, "es")[0] == payloads(5)
    queue.append([b"after the crash"])
    assert read_all(queue, "es")[0] == [b"after the crash"]
    queue.close()


def test_segments_are_deleted_only_once_every_sink_acknowledged_them(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es", "loki"), segment_bytes=1000)
    for _ in range(10):
        queue.append(payloads(5))
    assert len(segment_files(tmp_path)) >= 5
    _, end = read_all(queue, "es")
    queue.ack("es", end)
    assert len(segment_files(tmp_path)) >= 5  # loki has not taken them yet
    _, end = read_all(queue, "loki")
    queue.ack("loki", end)
    assert not queue.pending("es") and not queue.pending("loki")
    queue.close()
    assert segment_files(tmp_path) == []


def test_the_reader_waits_while_the_queue_is_full_and_goes_on_after_an_ack(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 64 * 1024, ("es",), segment_bytes=16 * 1024)
    while queue.has_room(5 * 108):
        queue.append(payloads(5))
    assert queue.bytes <= 64 * 1024
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (queue.wait_room(5 * 108, lambda: False), done.set()))
    waiter.start()
    assert not done.wait(0.3)
    _, end = read_all(queue, "es")
    queue.ack("es", end)
    assert done.wait(5)
    waiter.join()
    queue.close()


def test_waiting_for_room_gives_up_when_asked_to_stop(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 64 * 1024, ("es",))
    queue.append(payloads(600))
    assert queue.wait_room(1000, lambda: True) is False
    queue.close()


def test_a_second_process_on_the_same_queue_dir_is_refused(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    with pytest.raises(ConfigError, match="in use by another named-senderr"):
        DiskQueue(tmp_path, 1 << 20, ("es",))
    queue.close()


def test_a_damaged_cursor_file_is_refused_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "cursors.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"cursors\.json: not a named-senderr queue cursor file"):
        DiskQueue(tmp_path, 1 << 20, ("es",))


def test_the_queue_table_is_read_relative_to_its_file_and_the_command_line_wins(tmp_path: Path) -> None:
    toml = tmp_path / "ship.toml"
    toml.write_text('[queue]\ndir = "spool"\nmax_bytes = 1048576\nwhen_full = "drop"\n')
    config = load_ship_config(toml, ["stdout:"], {})
    assert config.queue == QueueConfig(dir=tmp_path / "spool", max_bytes=1048576, when_full="drop")
    config = load_ship_config(toml, ["stdout:"], {"queue.dir": Path("/elsewhere"), "queue.when_full": "wait"})
    assert config.queue.dir == Path("/elsewhere") and config.queue.when_full == "wait"


def test_a_misspelt_queue_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    toml = tmp_path / "ship.toml"
    toml.write_text("[queue]\nmax_byte = 1048576\n")
    with pytest.raises(ConfigError, match=r"unknown key 'queue\.max_byte'; did you mean 'max_bytes'\?"):
        load_ship_config(toml, ["stdout:"], {})


def test_follow_without_a_queue_dir_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="--follow needs a disk queue for its checkpoint; add --queue-dir DIR"):
        load_ship_config(None, ["stdout:"], {"follow": True, "inputs": ("/var/log/named/*.log",)})
