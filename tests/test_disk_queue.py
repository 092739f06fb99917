"""The disk queue on its own: records, cursors, segments, torn tails, damage, a full disk, planted links, the bound."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from named_senderr.cli import main
from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.queue.consumer import decode_event, encode_event
from named_senderr.queue.disk import HEADER, DiskQueue, QueueWriteError, decode_records, encode_record
from named_senderr.settings.loading import load_ship_config
from named_senderr.settings.ship import QueueConfig
from tests.tmpfs import fill, small_disk


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


def written(directory: Path, records: list[bytes]) -> Path:
    """A queue holding ``records``, closed; its last segment."""
    queue = DiskQueue(directory, 1 << 20, ("es",))
    queue.append(records)
    queue.close()
    return segment_files(directory)[-1]


def test_a_torn_tail_is_cut_at_start_and_the_records_before_it_kept(tmp_path: Path) -> None:
    segment = written(tmp_path, payloads(5))
    segment.write_bytes(segment.read_bytes() + encode_record(b"half written")[:9])
    warnings: list[str] = []
    queue = DiskQueue(tmp_path, 1 << 20, ("es",), warn=warnings.append)
    assert queue.torn_bytes == 9 and queue.damaged_bytes == 0 and read_all(queue, "es")[0] == payloads(5)
    assert warnings == [
        f"queue {tmp_path}: segment {segment.name}, offset 540: cut 9 bytes of an incomplete record at the end, "
        "as a crash during a write leaves; that write was never acknowledged"
    ]
    queue.append([b"after the crash"])
    assert read_all(queue, "es")[0] == [b"after the crash"]
    queue.close()


def test_zeros_the_file_system_left_after_a_crash_are_a_torn_tail_not_empty_records(tmp_path: Path) -> None:
    segment = written(tmp_path, payloads(3))
    segment.write_bytes(segment.read_bytes() + bytes(4096))
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert queue.torn_bytes == 4096 and read_all(queue, "es")[0] == payloads(3)
    queue.close()


def flip(segment: Path, offset: int, width: int = 16) -> None:
    data = bytearray(segment.read_bytes())
    data[offset : offset + width] = bytes(b ^ 0xFF for b in data[offset : offset + width])
    segment.write_bytes(bytes(data))


def test_damage_in_the_middle_of_a_segment_costs_only_the_records_it_touched(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, 1 << 20, ("es",), segment_bytes=4000)
    for _ in range(4):
        queue.append(payloads(30))  # 3,240 bytes an append: one segment each
    queue.close()
    segment = segment_files(tmp_path)[1]
    flip(segment, 5 * 108 + 50)  # inside the 6th record of the second segment
    warnings: list[str] = []
    queue = DiskQueue(tmp_path, 1 << 20, ("es",), warn=warnings.append)
    records = read_all(queue, "es")[0]
    assert records == payloads(30) + payloads(30)[:5] + payloads(30)[6:] + payloads(30) * 2
    assert [(d.segment, d.offset, d.size, d.torn) for d in queue.damage] == [(segment.name, 540, 108, False)]
    assert warnings == [
        f"queue {tmp_path}: segment {segment.name}, offset 540: skipped 108 damaged bytes (no valid length and CRC "
        "there), reading goes on at the next valid record; the events in them are lost and may have been "
        "acknowledged: check the disk (dmesg, SMART)"
    ]
    queue.close()


def test_damage_in_the_middle_of_the_last_segment_is_skipped_not_called_a_torn_write(tmp_path: Path) -> None:
    segment = written(tmp_path, payloads(10))
    flip(segment, 2 * 108 + 100, width=20)  # the end of the 3rd record and the header of the 4th
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert read_all(queue, "es")[0] == payloads(10)[:2] + payloads(10)[4:]
    assert queue.torn_bytes == 0 and queue.damaged_bytes == 216
    queue.append([b"after"])  # the segment was not cut: what follows the damage stays, new records after it
    assert read_all(queue, "es")[0] == [b"after"]
    queue.close()


def test_a_whole_last_record_failing_its_crc_is_damage_that_may_have_been_acknowledged(tmp_path: Path) -> None:
    segment = written(tmp_path, payloads(4))
    flip(segment, 3 * 108 + 60, width=1)
    queue = DiskQueue(tmp_path, 1 << 20, ("es",))
    assert read_all(queue, "es")[0] == payloads(3)
    assert [(d.offset, d.size, d.torn, d.cut) for d in queue.damage] == [(324, 108, False, True)]
    queue.close()


def test_a_failed_append_keeps_no_byte_and_the_next_append_is_read(tmp_path: Path) -> None:
    """A full disk takes part of a write: the segment is cut back, so nothing lands behind junk."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        queue = DiskQueue(disk / "q", 64 << 20, ("es",), segment_bytes=32 << 20)
        queue.append(payloads(10))
        ballast = fill(disk, leave=16 * 1024)
        with pytest.raises(QueueWriteError, match=r"the disk refused the write \(No space left on device\)"):
            queue.append(payloads(300, size=1000))  # 300 KB: the disk takes its first 16 KB, then ENOSPC
        assert segment_files(disk / "q")[-1].stat().st_size == 10 * 108
        ballast.unlink()
        queue.append([b"after the disk was full"])
        assert read_all(queue, "es")[0] == [*payloads(10), b"after the disk was full"]
        queue.close()


def test_a_disk_refusing_appends_is_reported_once_and_its_recovery_once(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        warnings: list[str] = []
        queue = DiskQueue(disk / "q", 64 << 20, ("es",), warn=warnings.append)
        ballast = fill(disk)
        for _ in range(50):
            with pytest.raises(QueueWriteError):
                queue.append(payloads(10))
        assert queue.write_failures == 50 and queue.write_error == "No space left on device"
        ballast.unlink()
        queue.append(payloads(10))
        assert queue.write_error is None
        queue.close()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"queue {disk / 'q'}: cannot write the queue: No space left on device;")
    assert warnings[1] == f"queue {disk / 'q'}: writable again (50 append(s) refused so far)"


def test_an_ack_on_a_full_disk_is_kept_in_memory_and_the_cursor_saved_once_there_is_room(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        warnings: list[str] = []
        queue = DiskQueue(disk / "q", 64 << 20, ("es",), segment_bytes=2000, warn=warnings.append)
        for _ in range(3):
            queue.append(payloads(10))
        ballast = fill(disk)
        queue.ack("es", queue.read("es", 10, 1 << 20)[1])  # the cursor file cannot be written: no exception
        assert "cannot save the read cursors (No space left on device)" in warnings[0]
        assert queue.read("es", 10, 1 << 20)[0] == payloads(10)
        ballast.unlink()
        queue.wait_data("es", 0)  # an idle consumer tries the save again
        assert warnings[1] == f"queue {disk / 'q'}: read cursors saved again"
        queue.close()
        queue = DiskQueue(disk / "q", 64 << 20, ("es",))
        assert read_all(queue, "es")[0] == payloads(10) * 2  # the saved cursor is past the acknowledged records
        queue.close()


def test_a_queue_dir_that_is_a_symlink_is_refused_with_the_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(
        ConfigError, match=rf"queue dir {tmp_path}/link is a symbolic link .*--queue-dir {tmp_path}/real"
    ):
        DiskQueue(tmp_path / "link", 1 << 20, ("es",))
    assert list((tmp_path / "real").iterdir()) == []


def test_ship_refuses_a_symlinked_queue_dir_as_a_usage_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    log = tmp_path / "named.log"
    log.write_text("")
    assert main(["ship", str(log), "--to", "stdout:", "--queue-dir", str(tmp_path / "link"), "--no-progress"]) == 2
    assert f"queue dir {tmp_path}/link is a symbolic link" in capsys.readouterr().err


def test_a_planted_lock_symlink_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "lock").symlink_to(target)
    with pytest.raises(ConfigError, match=r"its lock file is a symbolic link; remove .*/q/lock"):
        DiskQueue(tmp_path / "q", 1 << 20, ("es",))
    assert target.read_text() == "keep me"


def test_a_planted_cursor_temp_symlink_is_never_written_through(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / ".cursors.json.tmp").symlink_to(target)  # the name the cursors were once saved under
    queue = DiskQueue(tmp_path / "q", 1 << 20, ("es",))
    queue.append(payloads(3))
    queue.ack("es", queue.read("es", 2, 1 << 20)[1])
    queue.close()
    assert target.read_text() == "keep me"
    assert not (tmp_path / "q" / "cursors.json").is_symlink()


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
    assert queue.held_bytes <= 64 * 1024
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
