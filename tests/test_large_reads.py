"""The large-read reader gives what the block reader gives: lines, offsets, counters and progress ticks."""

from __future__ import annotations

import io
import random
import threading

import pytest

from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.large_reads import large_read_candidate_lines
from named_senderr.sources.log_file import BLOCK_SIZE, BOM, candidate_lines
from named_senderr.sources.phrase_scan import find_with_bytes, make_hyperscan_finder, make_native_finder
from named_senderr.telemetry import Stats

ERROR = b"21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#5353 (a.example): error sending response: would block"
UDP = b"Nov 21 04:47:35 ns1 named[77]: Sending UDP messages failed: permission denied"
NOISE = b"21-Nov-2026 04:47:35.739 general: info: zone example/IN: loaded serial 7"
JSON = b'{"MESSAGE": "client 192.0.2.7#53: send failed: connection refused", "_HOSTNAME": "ns1"}'


def both(data: bytes, read_size: int, count_lines: bool = True, strip_bom: bool = True):
    """What each reader yields for ``data``, with its counters and how many progress ticks it gave."""
    results = []
    for reader, extra in ((candidate_lines, {}), (large_read_candidate_lines, {"read_size": read_size})):
        stats, ticks = Stats(), [0]

        def tick(ticks: list[int] = ticks) -> None:
            ticks[0] += 1

        found = list(reader(io.BytesIO(data), stats, tick, None, strip_bom, count_lines, **extra))  # type: ignore[operator]
        results.append((found, stats, ticks[0]))
    return results


def generated_log(seed: int, lines: int) -> bytes:
    """Send errors among noise, with every awkward line the readers must agree on."""
    rng = random.Random(seed)
    awkward = [
        b"x" * (MAX_LINE_BYTES + 1),  # just over the limit, no phrase
        ERROR + b" " + b"y" * MAX_LINE_BYTES,  # over the limit, phrase in its head
        b"z" * MAX_LINE_BYTES + ERROR,  # over the limit, phrase past its head
        b"q" * (MAX_LINE_BYTES - len(ERROR)) + ERROR,  # exactly at the limit
        b"w" * (3 * BLOCK_SIZE + 17) + b" " + ERROR,  # over several blocks
        ERROR.replace(b"a.example", b"caf\xe9.example"),  # invalid UTF-8, a candidate
        NOISE + b" \xff\xfe",  # invalid UTF-8, noise
        ERROR + b"\r",  # CRLF
        b"",  # empty line
        UDP,
        ERROR + b" " + ERROR,  # two phrases, one line
    ]
    out = [rng.choice(awkward) if rng.random() < 0.05 else ERROR if rng.random() < 0.1 else NOISE for _ in range(lines)]
    return b"\n".join(out)


@pytest.mark.parametrize("read_size", [BLOCK_SIZE, 16 * BLOCK_SIZE, 3 * BLOCK_SIZE + 1, 1000, 5 * BLOCK_SIZE - 7])
@pytest.mark.parametrize("seed", range(4))
def test_large_reads_give_the_block_readers_lines_offsets_and_counters(seed, read_size):
    data = generated_log(seed, 3000)
    (expected, expected_stats, expected_ticks), (found, stats, ticks) = both(data + b"\n", read_size)
    assert found == expected
    assert stats == expected_stats
    assert ticks == expected_ticks


@pytest.mark.parametrize("seed", range(4))
def test_large_reads_agree_on_a_last_line_without_newline(seed):
    (expected, expected_stats, _), (found, stats, _) = both(generated_log(seed, 2000) + b"\n" + ERROR, 2 * BLOCK_SIZE)
    assert found == expected and found[-1][1] == ERROR
    assert stats == expected_stats


@pytest.mark.parametrize(
    "tail", [b"o" * (MAX_LINE_BYTES + 5), ERROR + b"p" * MAX_LINE_BYTES, b"r" * MAX_LINE_BYTES, ERROR + b"\xff"]
)
def test_large_reads_agree_on_an_awkward_last_line_without_newline(tail):
    (expected, expected_stats, _), (found, stats, _) = both(NOISE + b"\n" + ERROR + b"\n" + tail, 4 * BLOCK_SIZE)
    assert found == expected
    assert stats == expected_stats


@pytest.mark.parametrize("strip_bom", [True, False])
def test_large_reads_agree_on_a_byte_order_mark(strip_bom):
    data = BOM + generated_log(5, 2000) + b"\n"
    (expected, expected_stats, expected_ticks), (found, stats, ticks) = both(data, 2 * BLOCK_SIZE, strip_bom=strip_bom)
    assert found == expected
    assert (stats, ticks) == (expected_stats, expected_ticks)


def test_large_reads_agree_on_a_file_that_is_only_a_byte_order_mark():
    (expected, expected_stats, expected_ticks), (found, stats, ticks) = both(BOM, 2 * BLOCK_SIZE)
    assert (found, stats, ticks) == (expected, expected_stats, expected_ticks)
    assert stats.bytes == len(BOM)


def test_large_reads_agree_without_line_counting():
    data = generated_log(6, 3000) + b"\n"
    (expected, expected_stats, _), (found, stats, _) = both(data, 16 * BLOCK_SIZE, count_lines=False)
    assert found == expected
    assert stats == expected_stats and stats.lines == 0


def test_large_reads_yield_every_line_of_json_logs():
    lines = [JSON if i % 4 else b'{"MESSAGE": "zone loaded"}' for i in range(5000)] + [b"", b"y" * (MAX_LINE_BYTES + 3)]
    (expected, expected_stats, _), (found, stats, _) = both(b"\n".join(lines) + b"\n", 2 * BLOCK_SIZE)
    assert found == expected and len(found) == 5001
    assert stats == expected_stats


@pytest.mark.skipif(make_hyperscan_finder() is None, reason="hyperscan is not installed here")
def test_large_reads_find_the_same_lines_with_every_finder():
    data = generated_log(7, 3000) + b"\n"
    finders = [find_with_bytes, make_hyperscan_finder(), make_native_finder()]
    results = [list(large_read_candidate_lines(io.BytesIO(data), Stats(), find=finder)) for finder in finders if finder]
    assert len(results) >= 2 and all(found == results[0] for found in results)


def test_one_finder_scans_in_many_threads_at_once() -> None:
    """Two files read at once share the finder: each thread must get its own scratch space."""
    find = make_hyperscan_finder()
    if find is None:
        pytest.skip("hyperscan is not installed")
    block = b"x" * 4096 + b"error sending response" + b"y" * 4096
    errors: list[BaseException] = []

    def scan() -> None:
        try:
            for _ in range(2000):
                assert find(block, 0, len(block)) == [4096]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
