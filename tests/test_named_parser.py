"""Parser behaviours beyond the corpus: bad bytes, rejections and their causes."""

from __future__ import annotations

import random
import re

from named_senderr.event import Event
from named_senderr.parse.grok import (
    expand,
    load_line_patterns,
    optionals_as_branches,
    patterns_dir,
    without_plain_groups,
)
from named_senderr.parse.named import MAX_LINE_BYTES, MAX_QNAME_CHARS, Rejection, is_candidate
from named_senderr.sources.phrase_scan import NEEDLES
from tests.corpus import load_cases
from tests.parsing import make_parser

LINE = "21-Oct-2019 10:22:33.200 client @0x7f5e 192.0.2.23#40023 (example.com): view v: error sending response: unset"


def test_line_without_a_phrase_is_not_a_candidate():
    assert make_parser().parse("21-Oct-2019 10:22:33.200 general: info: all zones loaded") is None


def test_every_phrase_the_file_scan_searches_makes_a_line_a_candidate():
    """The file reader skips lines without a needle: a needle the parser ignored would lose nothing, a
    marker without a needle would lose events; both lists name the same texts (internal_send's with an address)."""
    assert [n.decode() for n in NEEDLES if not is_candidate(f"x {n.decode()} 192.0.2.1#53: y")] == []
    assert not is_candidate("client 192.0.2.1#53: transfer of 'example.com/IN': AXFR ended")


def test_internal_send_trace_without_an_address_is_no_candidate():
    """The socket code's debug trace names no address; only the UNEXPECTED_ERROR companion line does."""
    assert not is_candidate("general: debug 60: socket 0x81d2f00: internal_send: task 0x81cf000 got event 0x81d4a10")
    assert is_candidate("general: error: internal_send: 192.0.2.53#53: Network is down")


def test_internal_send_line_cut_after_its_address_is_rejected_as_truncated():
    result = make_parser().parse("general: error: internal_send: 192.0.2.53#53")
    assert isinstance(result, Rejection) and result.reason == "truncated"


def test_internal_send_line_without_its_address_is_no_named_message():
    result = make_parser().parse("internal_send: queue #3: Network is down")
    assert isinstance(result, Rejection) and result.reason == "not_named_message"


def test_a_transfer_step_without_its_zone_is_a_rejection_not_an_event():
    result = make_parser().parse("client 192.0.2.7#41234 (example.com): view v: x': send: connection reset")
    assert isinstance(result, Rejection)


def test_invalid_utf8_is_replaced_in_fields_and_escaped_in_the_original():
    raw = LINE.replace("view v", "view v\xff").encode("latin-1")
    event = make_parser().parse_bytes(raw)
    assert event.view == "v\ufffd"
    assert "v\\xff" in event.original


def test_nul_byte_is_rejected_with_its_column():
    result = make_parser().parse(LINE.replace("#40023", "#40023\x00"))
    assert isinstance(result, Rejection) and result.reason == "nul_byte"
    assert "column" in result.detail


def test_port_above_65535_is_rejected_not_guessed():
    result = make_parser().parse("client 192.0.2.29#70000: error sending response: unset")
    assert (result.reason, result.detail) == ("invalid_port", "port 70000 is above 65535")


def test_impossible_ipv6_address_is_rejected():
    result = make_parser().parse("client 2001:db8:::1:2:3:4:5:6#53: error sending response: unset")
    assert isinstance(result, Rejection) and result.reason == "invalid_address"


def test_glued_lines_are_rejected_as_such():
    result = make_parser().parse(LINE + LINE)
    assert result.reason == "glued_lines"


def test_text_longer_than_the_limit_is_rejected_with_its_head():
    result = make_parser().parse(LINE + " " + "x" * MAX_LINE_BYTES)
    assert result.reason == "line_too_long"
    assert len(result.line) == MAX_LINE_BYTES


def test_crlf_line_end_is_stripped():
    event = make_parser().parse(LINE + "\r\n")
    assert event.reason_text == "unset"


def test_repeat_opening_without_closing_bracket_is_rejected():
    result = make_parser().parse(
        "Oct 21 10:22:33 ns1 named[1]: message repeated 7 times: [ client 192.0.2.41#40041: error sending response: unset"
    )
    assert result.reason == "unbalanced_repeat"


def test_format_switch_in_the_middle_of_a_stream_is_followed():
    parser = make_parser()
    syslog = "Oct 21 10:22:33 ns1 named[1234]: client 192.0.2.1#53: error sending response: unset"
    assert isinstance(parser.parse(LINE), Event)
    assert parser.parse(syslog).host == "ns1"
    assert parser.parse(LINE).view == "v"


def test_journal_json_with_non_utf8_message_bytes_is_decoded():
    message = list(b"client 192.0.2.40#40040: error sending response: unset")
    line = (
        '{"__REALTIME_TIMESTAMP":"1634804553123456","_HOSTNAME":"ns1","MESSAGE":' + str(message).replace(" ", "") + "}"
    )
    event = make_parser().parse(line)
    assert (event.client_ip, event.host, event.timestamp) == ("192.0.2.40", "ns1", "2021-10-21T08:22:33.123456Z")


def test_broken_json_line_is_rejected_with_the_decoder_message():
    result = make_parser().parse('{"MESSAGE": "client 192.0.2.1#53: error sending response: unset"')
    assert result.reason == "invalid_json"


def qname_line(length: int) -> str:
    return f"21-Oct-2019 10:22:33.200 client @0x7f5e 192.0.2.23#40023 ({'a' * length}): error sending response: unset"


def test_query_name_longer_than_any_dns_name_is_rejected_with_its_own_cause():
    result = make_parser().parse(qname_line(9_900))  # a 10,000-character line
    assert (result.reason, result.detail) == (
        "qname_too_long",
        "query name of 9,900 characters; a DNS name is at most 255 octets, 1,020 characters written out",
    )


def test_query_name_of_255_octets_each_written_as_an_escape_is_kept():
    assert make_parser().parse(qname_line(MAX_QNAME_CHARS)).qname == "a" * 1020


def test_a_line_reads_the_same_whatever_line_came_before_it() -> None:
    """A channel line with a category also looks like a host-less syslog line: the order of patterns decides."""
    channel = (
        "2025-03-04T05:06:07.890Z security: debug 3: client @0x7f0e1c02a9b8 203.0.113.77#41000 (x.example): "
        "send failed: unset"
    )
    syslog = "Oct 21 10:22:33 ns1 named[1234]: client @0x7f1a2c0b3d40 192.0.2.1#53 (x.example): send failed: unset"
    fresh = make_parser().parse(channel)
    parser = make_parser()
    parser.parse(syslog)
    after = parser.parse(channel)
    assert isinstance(fresh, Event) and isinstance(after, Event)
    assert (after.category, after.program) == (fresh.category, fresh.program) == ("security", None)


def _mutations(lines: list[str], count: int) -> list[str]:
    """Corpus lines with a few characters inserted, deleted or replaced: near misses of every shape."""
    rng = random.Random(14)
    alphabet = ' :#%@()[]\\".-/0123456789abcdefxX'
    out = []
    for _ in range(count):
        text = rng.choice(lines)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(("", rng.choice(alphabet))) + text[at + rng.randint(0, 1) :]
        out.append(text)
    return out


def test_compiled_patterns_match_and_capture_exactly_as_the_plain_expansion() -> None:
    """The optionals rewritten as branches (for speed) change no match and no capture, on hits and near misses."""
    lines = [case.line for case in load_cases()]
    lines += _mutations(lines, 20000)
    directory = patterns_dir()
    for pattern in load_line_patterns(directory):
        plain = re.compile(without_plain_groups(expand(directory, pattern.name)))
        assert plain.pattern != pattern.regex.pattern
        for text in lines:
            fast, reference = pattern.regex.match(text), plain.match(text)
            assert (fast and (fast.span(), fast.groupdict())) == (
                reference and (reference.span(), reference.groupdict())
            )


def test_optional_groups_become_branches_and_nothing_else_changes() -> None:
    regex = r"(?:a(?P<x>b)?)?c(?=d)?e(?:f)??[)?]\)?(?:g)?+"
    assert optionals_as_branches(regex) == r"(?:a(?:(?P<x>b)|)|)c(?=d)?e(?:f)??[)?]\)?(?:g)?+"
