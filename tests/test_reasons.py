"""The taxonomy is version-aware: the message kind tells the era, the era what a text means and what to advise."""

from __future__ import annotations

import pytest

from named_senderr import reasons
from named_senderr.reasons import ERROR_SENDING_RESPONSE, OTHER, SEND_FAILED, UDP_SEND_FAILED, classify, hint

NETMGR_ONLY = ["no pending connections", "address family not supported", "failure", "max size"]


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [
        ("address family not supported", SEND_FAILED, "address_not_available"),
        ("address not available", ERROR_SENDING_RESPONSE, "address_not_available"),
        ("I/O error", SEND_FAILED, "io_error"),
        ("I/O error", ERROR_SENDING_RESPONSE, "io_error"),
        ("failure", SEND_FAILED, "http2_failure"),
        ("max size", SEND_FAILED, "message_too_big"),
        ("max size", UDP_SEND_FAILED, "message_too_big"),
        ("no pending connections", UDP_SEND_FAILED, "would_block"),
    ],
)
def test_text_bind_logs_at_send_time_has_a_reason(text: str, kind: str, reason: str) -> None:
    assert classify(text, kind) == reason


@pytest.mark.parametrize("text", NETMGR_ONLY)
def test_netmgr_only_text_on_a_socket_code_line_stays_other(text: str) -> None:
    assert classify(text, ERROR_SENDING_RESPONSE) == OTHER


def test_unexpected_error_hint_names_the_companion_line_of_each_era() -> None:
    assert "unable to convert libuv error code" in hint("unclassified", SEND_FAILED)
    assert "internal_send" in hint("unclassified", ERROR_SENDING_RESPONSE)
    assert "internal_send" not in hint("unclassified", SEND_FAILED)


@pytest.mark.parametrize(
    ("reason", "kind"), [("host_unreachable", ERROR_SENDING_RESPONSE), ("permission_denied", SEND_FAILED)]
)
def test_eperm_hint_of_each_era_names_a_full_conntrack_table(reason: str, kind: str) -> None:
    text = hint(reason, kind)
    assert "EPERM" in text and "nf_conntrack_max" in text and "conntrack -S" in text


def test_every_reason_has_a_hint_for_every_kind() -> None:
    for kind in (ERROR_SENDING_RESPONSE, SEND_FAILED, UDP_SEND_FAILED, reasons.INTERNAL_SEND_FAILED):
        assert set(reasons.reasons_for(kind).values()) | {OTHER} <= set(reasons.hints_for(kind))


@pytest.mark.parametrize(
    ("text", "reason"),
    [("Message too long", "message_too_big"), ("Invalid argument", "invalid_file"), ("Network is down", "network_down"),
     ("Input/output error", "io_error"), ("Socket is not connected", "not_connected"), ("Bad address", OTHER)],
)  # fmt: skip
def test_internal_send_reads_strerror_texts(text: str, reason: str) -> None:
    assert classify(text, reasons.INTERNAL_SEND_FAILED) == reason


def test_internal_send_does_not_read_netmgr_texts() -> None:
    assert classify("no pending connections", reasons.INTERNAL_SEND_FAILED) == OTHER


def test_every_internal_send_hint_first_says_which_line_it_explains() -> None:
    kind = reasons.INTERNAL_SEND_FAILED
    for reason in {*reasons.ERA_REASON_BY_TEXT[reasons.ERRNO].values(), OTHER}:
        assert hint(reason, kind).startswith("the errno behind the send failure named logs beside this line")


def test_kind_of_neither_era_reads_only_the_shared_table() -> None:
    assert reasons.era("zone_transfer_send") is None
    assert classify("no pending connections", "zone_transfer_send") == OTHER
    assert classify("I/O error", "zone_transfer_send") == "io_error"
