"""Recognize named send-error lines and turn them into Events.

The hot path: a line without one of the fixed phrases costs one substring test;
a candidate is matched by the anchored top-level patterns, always in the
order patterns/ declares them, so that a line reads the same whatever came
before it (a channel line can also look like a host-less syslog line). A candidate that
matches none is diagnosed and returned as a Rejection with a precise reason.
"""

from __future__ import annotations

import json
import operator
import re
from _socket import AF_INET6, inet_pton  # socket.py would build its enums at every start (3 ms)
from collections.abc import Callable
from dataclasses import dataclass

from named_senderr import reasons
from named_senderr.event import Event
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.grok import LinePattern, load_line_patterns

MAX_LINE_BYTES = 64 * 1024
# A DNS name is at most 255 octets; written out, each octet takes at most 4 characters (\DDD).
MAX_QNAME_CHARS = 255 * 4
CLIENT_PHRASES = ("error sending response", "send failed")
UDP_PHRASE = reasons.UDP_PHRASE
# A line is a candidate when it holds "error sending" or "send exceeded" (not the
# whole phrase, so that a line cut short inside it is still seen and rejected),
# "send failed", the UDP phrase, or a zone transfer's "': send:" or "sending
# zone data", or the socket code's "internal_send: " with an address ("#": its debug
# lines name none); sources/phrase_scan.py searches files for the same texts.
JOURNAL_BYTE_MESSAGE = '"MESSAGE":['


_LOOSE_CLIENT = re.compile(r"(?:client (?:@\S+ )?|internal_send: )(\[?[0-9A-Fa-f:.]*\]?)(?:%\S+?)?#(\d+)")
_PHRASE_SEARCH = re.compile(
    r"error sending response|send failed|send exceeded maximum size|(?<=': )send(?=: )|sending zone data"
    r"|Sending UDP messages failed|internal_send(?=: )"
)
INTERNAL_PHRASE = reasons.INTERNAL_SEND_PHRASE


@dataclass(frozen=True, slots=True)
class Rejection:
    """A candidate line that did not become an event, and why."""

    reason: str
    detail: str
    line: str


def is_candidate(text: str) -> bool:
    # Every marker holds "end": one test turns most lines away before the seven precise ones.
    if "end" in text and (
        "error sending" in text
        or "send failed" in text
        or UDP_PHRASE in text
        or "send exceeded" in text
        or "sending zone data" in text
        or "': send:" in text
        or ("internal_send: " in text and "#" in text)
    ):
        return True
    return text.startswith("{") and JOURNAL_BYTE_MESSAGE in text  # journald's non-UTF-8 MESSAGE


# The captures ``_event`` reads, in the order it unpacks them; a pattern without one reads None.
FIELDS = (
    "phrase", "repeat_count", "repeat_close", "client_ip", "client_port", "qname", "log_time", "named_time",
    "reason_text", "pid", "priority", "bind_message", "scope", "client_ptr", "view", "signer", "netmgr_ptr", "zone",
    "zone_class", "host", "program", "category", "severity", "facility", "syslog_severity", "asl_level", "container",
    "internal_phrase", "destination_ip", "destination_port", "destination_scope",
)  # fmt: skip
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A pattern and how to pick ``FIELDS`` out of ``match.groups() + (None,)`` in one C call."""

    pattern: LinePattern
    pick: Callable[[tuple], tuple]


def _compile(pattern: LinePattern) -> _Compiled:
    index = pattern.groupindex
    absent = pattern.groups  # the None appended after the last group
    return _Compiled(pattern, operator.itemgetter(*(index.get(name, absent + 1) - 1 for name in FIELDS)))


class NamedLineParser:
    """Parses one line of text into an Event, a Rejection, or None (not a candidate)."""

    def __init__(self, timestamps: TimestampNormalizer, patterns: list[LinePattern] | None = None) -> None:
        self.timestamps = timestamps
        self._compiled = [_compile(p) for p in (patterns or load_line_patterns())]
        self.patterns = [c.pattern for c in self._compiled]
        # (phrase, reason_text) -> (message kind, reason): a storm logs a handful of texts again and again.
        self._reasons: dict[tuple[str | None, str], tuple[str, str]] = {}

    def parse_bytes(self, raw: bytes) -> Event | Rejection | None:
        """Parse a raw line; invalid UTF-8 is replaced in fields and escaped in ``original``."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            result = self.parse(raw.decode("utf-8", "replace"))
            escaped = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
            if isinstance(result, Event):
                result.original = escaped
            elif isinstance(result, Rejection):
                result = Rejection(result.reason, result.detail, escaped)
            return result
        return self.parse(text)

    def parse(self, text: str) -> Event | Rejection | None:
        text = text.rstrip("\r\n")
        if not is_candidate(text):
            return None
        if len(text) > MAX_LINE_BYTES:
            return Rejection("line_too_long", f"{len(text)} characters, limit {MAX_LINE_BYTES}", text[:MAX_LINE_BYTES])
        if text.startswith("{"):
            return self._parse_json(text)
        return self._match(text, text)

    def _match(self, text: str, original: str) -> Event | Rejection:
        for compiled in self._compiled:
            m = compiled.pattern.regex.match(text)
            if m is not None:
                return self._event(compiled.pick((*m.groups(), None)), original)
        return diagnose(original)

    def _event(self, fields: tuple, original: str) -> Event | Rejection:
        """The Event of one match's ``FIELDS``, or the Rejection of a value no pattern can rule out."""
        (phrase, repeat, repeat_close, ip, port_text, qname, log_time, named_time, reason_text, pid, priority,
         bind_message, scope, client_ptr, view, signer, netmgr_ptr, zone, zone_class, host, program, category,
         severity, facility, syslog_severity, asl_level, container, internal_phrase, destination_ip, destination_text,
         destination_scope) = fields  # fmt: skip
        if (repeat is None) != (repeat_close is None):
            return Rejection("unbalanced_repeat", "'message repeated N times: [' without its ']'", original)
        port: int | None = None
        destination_port: int | None = None
        if ip is not None:
            checked = _checked_port(ip, port_text, original)
            if isinstance(checked, Rejection):
                return checked
            port = checked
        if destination_ip is not None:  # an internal_send line: the address the socket code sent to
            checked = _checked_port(destination_ip, destination_text, original)
            if isinstance(checked, Rejection):
                return checked
            destination_port = checked
            phrase, scope = internal_phrase, destination_scope
        if qname is not None and len(qname) > MAX_QNAME_CHARS:
            return Rejection(
                "qname_too_long",
                f"query name of {len(qname):,} characters; a DNS name is at most 255 octets, "
                f"{MAX_QNAME_CHARS:,} characters written out",
                original,
            )
        time_text = log_time or named_time
        timestamp = self.timestamps.to_rfc3339(time_text) if time_text else None
        try:
            kind, reason = self._reasons[phrase, reason_text]
        except KeyError:
            kind, reason = self.classify(phrase, reason_text)
        # Positional, in Event's field order: a third of the cost of keywords on this path.
        return Event(
            kind, reason, reason_text, bind_message or "", original, timestamp,
            timestamp is not None or time_text is None,  # timestamp_valid
            ip, port, scope, client_ptr, qname, view, signer, netmgr_ptr, zone, zone_class,
            int(repeat) if repeat else 1,  # repeat_count
            host, program, int(pid) if pid else None, category, severity, int(priority) if priority else None,
            facility, syslog_severity or asl_level, container,
            None, None, None, None, None, None,  # file, offset, first_seen, last_seen, rollup_window, ingested
            destination_ip, destination_port,
        )  # fmt: skip

    def classify(self, phrase: str | None, reason_text: str) -> tuple[str, str]:
        """The message kind and reason of a (phrase, reason text) not seen yet, kept for the next lines.

        The compiled loop (parse/_named_fast.c) calls it too: a new text costs a classification, not a
        whole line through the patterns in ``re``.
        """
        kind = reasons.KIND_BY_PHRASE[phrase] if phrase else reasons.UDP_SEND_FAILED
        reason = reasons.classify(reason_text, kind)
        if len(self._reasons) >= _CACHE_LIMIT:
            self._reasons.clear()
        self._reasons[phrase, reason_text] = kind, reason
        return kind, reason

    def _parse_json(self, text: str) -> Event | Rejection:
        """journalctl -o json (MESSAGE, maybe as a byte array) and docker json-file (log)."""
        try:
            record = json.loads(text)
        except ValueError as exc:
            return Rejection("invalid_json", f"line starts with '{{' but is not JSON: {exc}", text)
        if not isinstance(record, dict):
            return Rejection("invalid_json", "JSON line is not an object", text)
        message = record.get("MESSAGE", record.get("log", record.get("message")))
        if isinstance(message, list) and all(isinstance(b, int) and 0 <= b < 256 for b in message):
            message = bytes(message).decode("utf-8", "replace")  # journald's form for non-UTF-8
        if not isinstance(message, str):
            return Rejection("invalid_json", "no MESSAGE, log or message string in the JSON object", text)
        result = self._match(message.rstrip("\r\n"), text)
        if isinstance(result, Event):
            _apply_journal_fields(result, record, self.timestamps)
        return result


def _checked_port(ip: str, port_text: str, original: str) -> int | Rejection:
    """The port of ``ip#port_text``, or the Rejection of an address or port no pattern can rule out."""
    if ":" in ip and not _is_ipv6(ip):
        return Rejection("invalid_address", f"{ip!r} is not an IPv6 address", original)
    port = int(port_text)
    if port > 65535:
        return Rejection("invalid_port", f"port {port} is above 65535", original)
    return port


def _is_ipv6(text: str) -> bool:
    """inet_pton: the C parser, 20 times faster than ipaddress for the hot path."""
    try:
        inet_pton(AF_INET6, text)
    except OSError:
        return False
    return True


def _apply_journal_fields(event: Event, record: dict, timestamps: TimestampNormalizer) -> None:
    realtime = record.get("__REALTIME_TIMESTAMP")
    if isinstance(realtime, str) and realtime.isdigit():
        event.timestamp = timestamps.to_rfc3339(realtime)
        event.timestamp_valid = event.timestamp is not None
    elif isinstance(record.get("time"), str):  # docker json-file
        event.timestamp = timestamps.to_rfc3339(record["time"])
        event.timestamp_valid = event.timestamp is not None
    event.host = _text(record.get("_HOSTNAME")) or event.host
    event.program = _text(record.get("SYSLOG_IDENTIFIER")) or event.program
    for key, attribute in (("_PID", "pid"), ("PRIORITY", "priority")):
        value = record.get(key)
        if isinstance(value, str) and value.isdigit():
            setattr(event, attribute, int(value))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def diagnose(line: str) -> Rejection:
    """Why a candidate matched no pattern, as precisely as the line allows."""
    if "\x00" in line:
        return Rejection("nul_byte", f"NUL byte at column {line.index(chr(0)) + 1}", line)
    found = list(_PHRASE_SEARCH.finditer(line))
    phrases = [m.group() for m in found]
    if len(phrases) > 1:
        return Rejection("glued_lines", f"{len(phrases)} send-error messages in one line (a lost newline?)", line)
    if not phrases:
        return Rejection("truncated", "the line ends inside the send-error phrase", line)
    client = _LOOSE_CLIENT.search(line)
    if client:
        address, port = client.group(1), int(client.group(2))
        if address.startswith("["):
            return Rejection("invalid_address", f"{address} is bracketed; named never brackets addresses", line)
        import ipaddress  # only a rejected line needs it

        try:
            ipaddress.ip_address(address)
        except ValueError:
            return Rejection("invalid_address", f"{address!r} is not an IP address", line)
        if port > 65535:
            return Rejection("invalid_port", f"port {port} is above 65535", line)
    elif phrases[0] == INTERNAL_PHRASE:
        return Rejection(
            "not_named_message", f"{INTERNAL_PHRASE!r} without the 'ADDRESS#PORT' named puts after it", line
        )
    elif phrases[0] != UDP_PHRASE:
        return Rejection("not_named_message", f"{phrases[0]!r} without named's 'client ADDRESS#PORT' prefix", line)
    # The phrase as found (a bare 'send' may occur earlier in a name); internal_send's text follows its address.
    tail = line[client.end() if client and phrases[0] == INTERNAL_PHRASE else found[0].end() :]
    if not tail.startswith(": ") or len(tail) == 2:
        return Rejection("truncated", f"no reason text after {phrases[0]!r}", line)
    return Rejection("unrecognized_format", "a send error, but no known log format covers the whole line", line)
