"""The version-independent ``reason`` taxonomy and the operator hint for each.

BIND prints ``isc_result_totext()`` of the send's result; the same kernel
condition reads differently across versions (EAGAIN is "would block" in the
socket code, "no pending connections" in netmgr). ``reason`` names the
condition, ``reason_text`` keeps what was logged. The message kind tells the
era (the socket code wrote "error sending response" up to 9.15.5, netmgr
"send failed" from 9.15.6), so reasons and hints are looked up by kind:
the era's table first, then the one shared by every era.
"""

from __future__ import annotations

import functools

ERROR_SENDING_RESPONSE = "error_sending_response"
SEND_FAILED = "send_failed"
UDP_SEND_FAILED = "udp_send_failed"
NETMGR_KINDS = frozenset({SEND_FAILED, UDP_SEND_FAILED})
SOCKET_KINDS = frozenset({ERROR_SENDING_RESPONSE})
# errno: libc's strerror() texts, as the socket code's internal_send line prints them.
NETMGR, SOCKET, ERRNO = "netmgr", "socket", "errno"
# The phrase named logs -> the message kind it names.
KIND_BY_PHRASE = {"error sending response": ERROR_SENDING_RESPONSE, "send failed": SEND_FAILED}
# A UDP answer larger than the path allows (EMSGSIZE, DF set): named re-sends it truncated (9.16.19+, 9.17.16+).
SEND_EXCEEDED_MAXIMUM_SIZE = "send_exceeded_maximum_size"
# An outgoing zone transfer (AXFR/IXFR answer to a secondary) that never left: "transfer of 'Z/C': send: ..."
# when a TCP send failed, "...: sending zone data: ..." when the next message could not be built or sent.
TRANSFER_SEND_FAILED = "transfer_send_failed"
KIND_BY_PHRASE |= {
    "send exceeded maximum size": SEND_EXCEEDED_MAXIMUM_SIZE,
    "send": TRANSFER_SEND_FAILED,
    "sending zone data": TRANSFER_SEND_FAILED,
}
UDP_PHRASE = "Sending UDP messages failed"
# The socket code's (lib/isc/unix/socket.c, 9.1 to 9.16) UNEXPECTED_ERROR on a send: named logs
# "FILE:LINE: unexpected error:" and then "internal_send: A#P: <strerror>", the errno behind the
# failure it reports on the client's (or, from 9.16, an outbound query's) own line.
INTERNAL_SEND_FAILED = "internal_send_failed"
INTERNAL_SEND_PHRASE = "internal_send"
KIND_BY_PHRASE[INTERNAL_SEND_PHRASE] = INTERNAL_SEND_FAILED
# Kinds that describe a failure another line already counts: shown beside the events, never summed
# into them (report/summary.py says why for each).
COMPANION_KINDS = frozenset({UDP_SEND_FAILED, INTERNAL_SEND_FAILED})
# netmgr's text for EAGAIN: would_block in the netmgr kinds only.
NO_PENDING_CONNECTIONS = "no pending connections"

OTHER = "other"

# reason -> what an operator should look at
HINTS: dict[str, str] = {
    "would_block": "socket send buffer full: raise net.core.wmem_default/wmem_max, check egress rate, NIC, firewall throughput",
    "unclassified": "outbound path bottleneck BIND did not name (EINTR, ECONNREFUSED, EAGAIN before 9.9.9, ENOBUFS): correlate with UDP SndbufErrors",
    "host_unreachable": (
        "routing to the client; up to 9.15.5 also EPERM: a local netfilter OUTPUT drop or a full conntrack table "
        "(nf_conntrack_max; `conntrack -S` insert_failed/drop)"
    ),
    "permission_denied": (
        "EPERM (from 9.15.6): a local netfilter OUTPUT drop or a full conntrack table (nf_conntrack_max; "
        "`conntrack -S` insert_failed/drop); EACCES: spoofed queries to broadcast addresses"
    ),
    "no_resources": "kernel buffers exhausted (sk_buff, mbufs) or interface queue full: check qdisc drops and SndbufErrors",
    "network_unreachable": "no route towards the client's network",
    "network_down": "the outgoing interface is down",
    "address_not_available": "source address gone (interface renumbered, link-local scope)",
    "connection_refused": "the client's port is closed (ICMP port unreachable on UDP)",
    "not_connected": "TCP client went away before the answer",
    "connection_reset": "TCP client reset the connection before the answer",
    "canceled": "named canceled the send (shutdown, reload, client timeout)",
    "timed_out": "the send did not complete in time: congested path or client",
    "invalid_file": "EINVAL: source port 0, blackhole route or malformed destination",
    "out_of_memory": "named could not allocate memory: check its memory limits",
    "shutting_down": "named is shutting down",
    "tls_error": "TLS failure on a DoT/DoH connection",
    "io_error": "EIO from the kernel on send: a failing NIC or driver, or a TUN/TAP/virtual interface whose backend is gone: check dmesg",
    "http2_failure": (
        "DoH: nghttp2 refused the answer on its HTTP/2 stream (the client reset or closed the stream, or a response "
        "was already submitted on it): client timeouts and stream resets, not the network"
    ),
    "message_too_big": (
        "EMSGSIZE: the answer is larger than the socket or path MTU allows: check max-udp-size/edns-udp-size, "
        "path MTU and fragmentation (named re-sends a UDP answer truncated, the client retries over TCP)"
    ),
    OTHER: "unknown text: report it, the taxonomy may need a new entry",
}
HINTS |= {
    "truncated": "UDP answer above the path MTU (EMSGSIZE, DF set): named re-sent it truncated (TC=1) and the client "
    "retries over TCP; lower edns-udp-size/max-udp-size (1232) or fix the interface or path MTU",
    "no_space": "no room in the message: on a zone transfer, one record too large for a 64 KB message "
    "(named logs 'RR too large for zone transfer' just before)",
}

REASON_BY_TEXT: dict[str, str] = {
    "would block": "would_block",
    "unset": "unclassified",
    "unexpected error": "unclassified",
    "host unreachable": "host_unreachable",
    "host down": "host_unreachable",
    "permission denied": "permission_denied",
    "not enough free resources": "no_resources",
    "network unreachable": "network_unreachable",
    "network down": "network_down",
    "address not available": "address_not_available",
    "connection refused": "connection_refused",
    "socket is not connected": "not_connected",
    "connection reset": "connection_reset",
    "operation canceled": "canceled",
    "timed out": "timed_out",
    "invalid file": "invalid_file",
    "out of memory": "out_of_memory",
    "shutting down": "shutting_down",
    "TLS error": "tls_error",
    "I/O error": "io_error",
}
# "send exceeded maximum size: truncating" (the only text of its kind); ISC_R_NOSPACE, which a zone
# transfer's "sending zone data" reports for a record that fits no message.
REASON_BY_TEXT |= {"truncating": "truncated", "ran out of space": "no_space"}

# What a text means in one era only (lib/isc/netmgr/uverr2result.c, later lib/isc/uv.c, against
# lib/isc/unix/socket.c's send path); texts of the other era fall through to REASON_BY_TEXT.
ERA_REASON_BY_TEXT: dict[str, dict[str, str]] = {
    NETMGR: {
        # netmgr reports EAGAIN (and, through libuv, ENOBUFS) as ISC_R_NOCONN; the socket code never did.
        NO_PENDING_CONNECTIONS: "would_block",
        # EAFNOSUPPORT/ENOTSUP: the socket code read EAFNOSUPPORT as "address not available".
        "address family not supported": "address_not_available",
        # ISC_R_FAILURE on a send: only the DoH server's HTTP/2 layer (lib/isc/netmgr/http.c).
        "failure": "http2_failure",
        # UV_EMSGSIZE, 9.16.19+/9.17.16+.
        "max size": "message_too_big",
    },
    SOCKET: {},
    # The errnos doio_send() does not handle itself, so only these reach "internal_send: A#P: TEXT"
    # (lib/isc/unix/socket.c:1688-1745@v9.16.50; EAGAIN, EINTR, ENOBUFS, EPERM, ECONNREFUSED, EHOSTUNREACH,
    # ENETUNREACH, EADDRNOTAVAIL, EACCES, EPIPE never do): glibc's texts, BSD's and Solaris' where they differ.
    ERRNO: {
        "Message too long": "message_too_big",  # EMSGSIZE
        "Invalid argument": "invalid_file",  # EINVAL
        "Input/output error": "io_error",  # EIO
        "I/O error": "io_error",  # EIO, Solaris
        "Network is down": "network_down",  # ENETDOWN
        "Transport endpoint is not connected": "not_connected",  # ENOTCONN
        "Socket is not connected": "not_connected",  # ENOTCONN, BSD
        "Connection timed out": "timed_out",  # ETIMEDOUT
        "Operation timed out": "timed_out",  # ETIMEDOUT, BSD
        "Connection reset by peer": "connection_reset",  # ECONNRESET, handled itself from 9.9
        "Software caused connection abort": "connection_reset",  # ECONNABORTED
        "Cannot allocate memory": "out_of_memory",  # ENOMEM
        "Not enough space": "out_of_memory",  # ENOMEM, Solaris
    },
}

# Where the era changes what an operator should look at.
ERA_HINTS: dict[str, dict[str, str]] = {
    NETMGR: {
        "would_block": (
            "netmgr: libuv's send queue was not empty or the socket buffer was full (EAGAIN, ENOBUFS): named answers "
            "faster than the socket drains: check egress rate, NIC and firewall throughput, then wmem "
            "(`named-senderr hostcheck` tells these apart)"
        ),
        "unclassified": (
            "netmgr: a libuv error BIND has no name for: the 'unable to convert libuv error code ... to isc_result' "
            "line logged beside it (category general) names the errno"
        ),
        "address_not_available": (
            "EADDRNOTAVAIL: source address gone (interface renumbered, link-local scope); 'address family not "
            "supported' (EAFNOSUPPORT): the client's address family does not fit the socket (IPv4 or IPv4-mapped "
            "client on an IPv6-only socket)"
        ),
    },
    SOCKET: {
        "unclassified": (
            "outbound path bottleneck BIND did not name (EINTR, ECONNREFUSED, EAGAIN before 9.9.9, ENOBUFS): "
            "the 'internal_send: A#P: ERROR' line logged just before (category general) names the errno; "
            "correlate with UDP SndbufErrors"
        ),
        "host_unreachable": (
            "EHOSTUNREACH/EHOSTDOWN: routing to the client; EPERM reads as host unreachable here: a local netfilter "
            "OUTPUT drop or a full conntrack table (nf_conntrack_max; `conntrack -S` insert_failed/drop)"
        ),
        "address_not_available": (
            "EADDRNOTAVAIL or EAFNOSUPPORT (both read as address not available): source address gone (interface "
            "renumbered, link-local scope) or an address family the socket cannot reach"
        ),
    },
}


# An internal_send line is not a failure of its own: its hint says which line it explains first.
_COMPANION_HINT = (
    "the errno behind the send failure named logs beside this line ('FILE:LINE: unexpected error:' just before it, "
    "then the client's 'error sending response', or from 9.16 an outbound query's failure): the same failure, "
    "counted there once; "
)
ERA_HINTS[ERRNO] = {r: _COMPANION_HINT + HINTS[r] for r in (*dict.fromkeys(ERA_REASON_BY_TEXT[ERRNO].values()), OTHER)}


def era(message_kind: str) -> str | None:
    """netmgr, socket or errno, told by the line's shape; None for a kind both eras write."""
    if message_kind == INTERNAL_SEND_FAILED:
        return ERRNO
    if message_kind in NETMGR_KINDS:
        return NETMGR
    return SOCKET if message_kind in SOCKET_KINDS else None


@functools.cache
def reasons_for(message_kind: str) -> dict[str, str]:
    """Logged text -> reason for one message kind: its era's meanings over the shared ones."""
    return REASON_BY_TEXT | ERA_REASON_BY_TEXT.get(era(message_kind) or "", {})


@functools.cache
def hints_for(message_kind: str) -> dict[str, str]:
    """Reason -> hint for one message kind: its era's hints over the shared ones."""
    return HINTS | ERA_HINTS.get(era(message_kind) or "", {})


def classify(reason_text: str, message_kind: str) -> str:
    """The normalized reason for ``reason_text`` as logged by ``message_kind``."""
    return reasons_for(message_kind).get(reason_text, OTHER)


def hint(reason: str, message_kind: str) -> str:
    """What to look at for ``reason`` on a ``message_kind`` line: the era changes the advice."""
    return hints_for(message_kind)[reason]
