"""The network a client address belongs to: how rollup, privacy and the report group clients."""

from __future__ import annotations

import ipaddress

# How operators group resolvers behind a NAT or a site.
IPV4_PREFIX, IPV6_PREFIX = 24, 56


def client_network(
    address: str, ipv4_prefix: int = IPV4_PREFIX, ipv6_prefix: int = IPV6_PREFIX
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The /24 of an IPv4 or the /56 of an IPv6 address (or the prefixes given); a %scope is dropped."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
