"""The http handler's address policy: which addresses are refused, however they are spelt."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsched.core.network_policy import (
    NetworkPolicy,
    denied_category,
    embedded_ipv4,
    is_localhost_name,
    parse_ip_literal,
)

DEFAULT = NetworkPolicy()


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "shared"),
        ("100.127.255.255", "shared"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "link-local"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("198.18.0.1", "reserved"),
        ("198.19.255.255", "reserved"),
        ("192.88.99.1", "reserved"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fdff:ffff::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("febf::1", "link-local"),
        ("fec0::1", "reserved"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2001::1", "reserved"),  # Teredo
        ("100::1", "reserved"),
        ("64:ff9b:1::1", "private"),
        ("1::1", "reserved"),  # outside global unicast
        ("4000::1", "reserved"),
        # IPv6 spellings of IPv4 addresses are judged as those addresses.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::10.0.0.1", "private"),  # NAT64
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_denied_ranges(address: str, category: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert denied_category(parsed) == category
    refusal = DEFAULT.refusal(address, parsed)
    assert refusal is not None
    assert refusal.category == category
    assert "worker.http.allowed_networks admits it" in refusal.message


@pytest.mark.parametrize(
    "address",
    [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "100.63.255.255",  # just below the shared range
        "100.128.0.0",  # just above it
        "172.15.255.255",
        "172.32.0.0",
        "11.0.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450::1",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses_are_admitted(address: str) -> None:
    assert denied_category(ipaddress.ip_address(address)) is None
    assert DEFAULT.admits(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # one decimal number
        ("0x7f000001", "127.0.0.1"),  # one hexadecimal number
        ("017700000001", "127.0.0.1"),  # one octal number
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # the last part fills the remaining bytes
        ("127.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # a trailing dot
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),  # as browsers read it: the safer reading, since it is refused
        ("0.0.0.0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_literal_addresses_in_any_spelling(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "1.2.3.4.5",  # five parts: a name
        "256.0.0.1",  # a part out of range
        "1.2.65536",
        "4294967296",  # more than 32 bits
        "08.0.0.1",  # not octal, not decimal
        "1..2",
        "١٢٧.0.0.1",  # Arabic-Indic digits are no digits here
        "0x7g.1",
        "-1.0.0.1",
        "[::1",
        "[nonsense]",
        "",
    ],
)
def test_names_are_not_taken_for_addresses(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "api.localhost", "2130706433", "[::1]", "0", "127.1"],
)
def test_the_api_refuses_loopback_it_can_see_without_dns(host: str) -> None:
    refusal = DEFAULT.refusal_for_host(host)
    assert refusal is not None
    assert refusal.category == "loopback" or host == "0"


def test_names_only_dns_can_judge_are_left_to_the_worker() -> None:
    assert DEFAULT.refusal_for_host("example.com") is None
    assert DEFAULT.refusal_for_host("localhost.example.com") is None
    assert not is_localhost_name("notlocalhost")


def test_allowed_networks_admit_what_they_name_and_nothing_else() -> None:
    policy = NetworkPolicy.from_cidrs(["10.20.0.0/16", "127.0.0.0/8", "fd00:1::/32"])
    assert policy.admits(ipaddress.ip_address("10.20.1.2"))
    assert policy.admits(ipaddress.ip_address("::ffff:10.20.1.2"))  # its mapped spelling too
    assert policy.admits(ipaddress.ip_address("127.0.0.1"))
    assert policy.admits(ipaddress.ip_address("fd00:1::5"))
    assert not policy.admits(ipaddress.ip_address("10.21.0.1"))
    assert not policy.admits(ipaddress.ip_address("::1"))  # IPv6 loopback is not 127.0.0.0/8
    assert not policy.admits(ipaddress.ip_address("169.254.169.254"))
    assert policy.refusal_for_host("localhost") is not None  # ::1 is still refused
    assert NetworkPolicy.from_cidrs(["127.0.0.0/8", "::1"]).refusal_for_host("localhost") is None


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "not a network", "10.0.0.0/33", ""])
def test_bad_cidrs_are_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match="not a network in CIDR notation"):
        NetworkPolicy.from_cidrs([cidr])


def test_the_refusal_names_the_address_the_host_and_the_setting() -> None:
    refusal = DEFAULT.refusal("metadata.internal", ipaddress.ip_address("169.254.169.254"))
    assert refusal is not None
    assert refusal.message == (
        "refused to connect to 169.254.169.254 (host metadata.internal), a link-local "
        "address: worker.http.allowed_networks admits it (for instance 169.254.169.254/32)"
    )


ipv4_addresses = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(ipv4_addresses)
def test_ipv4_mapped_and_compatible_spellings_are_judged_as_the_ipv4_address(
    address: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{address}")
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))
    expected = denied_category(address)
    for spelling in (mapped, nat64, six_to_four):
        assert embedded_ipv4(spelling) == address
        assert denied_category(spelling) == expected
    if int(address) > 1:  # ``::`` and ``::1`` are IPv6's own
        assert denied_category(ipaddress.IPv6Address(f"::{address}")) == expected


@given(ipv4_addresses)
def test_every_literal_spelling_of_an_ipv4_address_parses_to_it(
    address: ipaddress.IPv4Address,
) -> None:
    value = int(address)
    octets = address.packed
    spellings = [
        str(value),
        hex(value),
        "0" + oct(value)[2:] if value else "0",
        ".".join(f"0{byte:o}" if byte else "0" for byte in octets),
        ".".join(hex(byte) for byte in octets),
        f"{octets[0]}.{int.from_bytes(octets[1:], 'big')}",
        f"{octets[0]}.{octets[1]}.{int.from_bytes(octets[2:], 'big')}",
        f"[::ffff:{address}]",
    ]
    for spelling in spellings:
        parsed = parse_ip_literal(spelling)
        assert parsed is not None, spelling
        assert embedded_ipv4(parsed) or parsed == address, spelling
        assert DEFAULT.refusal_for_host(spelling) == (
            None if denied_category(address) is None else DEFAULT.refusal(spelling, parsed)
        )
