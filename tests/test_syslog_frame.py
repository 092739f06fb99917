"""Syslog framing, pure: octet counting, LF, their mix, and every way a stream can be wrong."""

from __future__ import annotations

import re

import pytest

from named_senderr.protocol.syslog_frame import FrameError, StreamDeframer, datagram_message

MSG = b"<28>1 2021-08-01T00:00:09Z ns1 named 4040 - - client 192.0.2.28#40028: error sending response: unset"
BSD = b"<28>Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.27#40027: error sending response: unset"


def counted(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def test_octet_counted_frames_are_cut_by_their_length():
    assert StreamDeframer(65536).feed(counted(MSG) + counted(BSD)) == [MSG, BSD]


def test_octet_counted_message_may_hold_a_newline_and_a_digit_start():
    message = b"<13>line one\n2 line two"
    assert StreamDeframer(65536).feed(counted(message)) == [message]


def test_lf_framed_messages_are_cut_at_each_newline_and_lose_their_cr():
    assert StreamDeframer(65536).feed(MSG + b"\r\n" + BSD + b"\n") == [MSG, BSD]


def test_one_connection_may_mix_both_framings():
    assert StreamDeframer(65536).feed(counted(MSG) + BSD + b"\n" + counted(BSD)) == [MSG, BSD, BSD]


def test_frames_split_anywhere_across_reads_come_out_whole():
    stream = counted(MSG) + BSD + b"\n" + counted(BSD)
    for cut in range(1, len(stream)):
        deframer = StreamDeframer(65536)
        assert deframer.feed(stream[:cut]) + deframer.feed(stream[cut:]) == [MSG, BSD, BSD], cut


def test_empty_lines_between_messages_are_skipped():
    assert StreamDeframer(65536).feed(b"\n\r\n" + BSD + b"\n\n") == [BSD]


def test_last_line_without_newline_is_a_message_at_end_of_stream():
    deframer = StreamDeframer(65536)
    assert deframer.feed(BSD) == []
    assert deframer.finish() == BSD


def test_stream_ending_inside_an_octet_counted_frame_is_an_error():
    deframer = StreamDeframer(65536)
    deframer.feed(counted(MSG)[:-5])
    with pytest.raises(FrameError, match="inside an octet-counted frame"):
        deframer.finish()


def test_octet_count_over_the_limit_is_an_oversize_error_before_the_body_arrives():
    deframer = StreamDeframer(65536)
    assert deframer.feed(b"70000 <13>") == []
    assert deframer.error is not None and deframer.error.oversize
    assert str(deframer.error) == "frame of 70000 bytes, limit 65536"


def test_line_over_the_limit_is_an_oversize_error_without_waiting_for_its_end():
    deframer = StreamDeframer(1000)
    deframer.feed(b"<13>" + b"x" * 1000)
    assert deframer.error is not None and deframer.error.oversize
    assert "no line end within 1000 bytes" in str(deframer.error)


def test_messages_before_a_bad_frame_are_still_delivered_and_nothing_after_it():
    deframer = StreamDeframer(65536)
    assert deframer.feed(BSD + b"\n" + b"garbage\n" + BSD + b"\n") == [BSD]
    assert deframer.error is not None
    assert deframer.feed(BSD + b"\n") == []


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (b"12x <13>hello", "not a number"),
        (b"1234567 <13>hello", "not 'LEN SP'"),
        (b"\x16\x03\x01\x02\x00", "neither '<PRI>' nor an octet count"),  # a TLS hello on the plain port
        (b"GET / HTTP/1.1\r\n", "neither '<PRI>' nor an octet count"),
    ],
)
def test_garbage_is_a_framing_error_that_shows_the_bytes(stream, match):
    deframer = StreamDeframer(65536)
    assert deframer.feed(stream) == []
    assert isinstance(deframer.error, FrameError) and not deframer.error.oversize
    assert re.search(match, str(deframer.error))


def test_datagram_loses_trailing_newline_and_nul():
    assert datagram_message(BSD + b"\n\x00") == BSD
