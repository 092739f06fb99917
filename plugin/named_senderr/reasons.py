"""The version-independent ``reason`` taxonomy and the operator hint for each.

BIND prints ``isc_result_totext()`` of the send's result; the same kernel
condition reads differently across versions (EAGAIN is "would block" in the
socket code, "no pending connections" in netmgr). ``reason`` names the
condition, ``reason_text`` keeps what was logged.
"""

from __future__ import annotations

ERROR_SENDING_RESPONSE = "error_sending_response"
SEND_FAILED = "send_failed"
UDP_SEND_FAILED = "udp_send_failed"
NETMGR_KINDS = frozenset({SEND_FAILED, UDP_SEND_FAILED})
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
# netmgr's text for EAGAIN: would_block in the netmgr kinds only.
NO_PENDING_CONNECTIONS = "no pending connections"

OTHER = "other"

# reason -> what an operator should look at
HINTS: dict[str, str] = {
    "would_block": "socket send buffer full: raise net.core.wmem_default/wmem_max, check egress rate, NIC, firewall throughput",
    "unclassified": "outbound path bottleneck BIND did not name (EINTR, ECONNREFUSED, EAGAIN before 9.9.9, ENOBUFS): correlate with UDP SndbufErrors",
    "host_unreachable": "routing to the client, or before 9.16 a local firewall (netfilter OUTPUT) drop",
    "permission_denied": "local firewall rules (EPERM from 9.16), or spoofed queries to broadcast addresses (EACCES)",
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
}
# "send exceeded maximum size: truncating" (the only text of its kind); ISC_R_NOSPACE, which a zone
# transfer's "sending zone data" reports for a record that fits no message.
REASON_BY_TEXT |= {"truncating": "truncated", "ran out of space": "no_space"}


def classify(reason_text: str, message_kind: str) -> str:
    """The normalized reason for ``reason_text`` as logged by ``message_kind``."""
    if reason_text == NO_PENDING_CONNECTIONS:
        # netmgr reports EAGAIN as ISC_R_NOCONN; the socket code never did.
        return "would_block" if message_kind in NETMGR_KINDS else OTHER
    return REASON_BY_TEXT.get(reason_text, OTHER)


def hint(reason: str) -> str:
    return HINTS[reason]
