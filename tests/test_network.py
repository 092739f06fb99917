"""The client network of an address, as rollup and privacy print it."""

from __future__ import annotations

from named_senderr.normalize.network import network_text


def test_an_ipv4_address_becomes_its_24() -> None:
    assert network_text("192.0.2.123") == "192.0.2.0"


def test_an_ipv6_address_becomes_its_56_and_loses_its_scope() -> None:
    assert network_text("2001:db8:c6c9:12ff::1b2a%eth0") == "2001:db8:c6c9:1200::"


def test_the_prefixes_given_are_used_not_the_defaults_cached_before() -> None:
    assert network_text("198.51.100.17") == "198.51.100.0"
    assert network_text("198.51.100.17", 16, 48) == "198.51.0.0"
    assert network_text("2001:db8:1:2::1", 16, 48) == "2001:db8:1::"
