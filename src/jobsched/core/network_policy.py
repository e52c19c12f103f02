"""Which network addresses the ``http`` handler may connect to: a pure policy, no I/O.

By default every address that leads back into the worker's own networks is refused:
loopback, private (RFC 1918, fc00::/7), link-local, shared (100.64.0.0/10),
unspecified, multicast, reserved, benchmarking and documentation ranges, and every
IPv6 address outside global unicast (2000::/3). IPv6 spellings of an IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``) are judged as that IPv4 address.
``allowed_networks`` (CIDRs, the ``worker.http.allowed_networks`` setting) admits
addresses the default would refuse.

The worker applies ``NetworkPolicy.refusal`` to every address a name resolves to,
right before it connects; the API applies ``refusal_for_host`` to what it can judge
without DNS (literal addresses, however spelt, and ``localhost``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_NETWORKS_SETTING = "worker.http.allowed_networks"
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")

_IPV4_DENIED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared"),  # carrier-grade NAT
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata lives at 169.254.169.254
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # the retired 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # and the broadcast address 255.255.255.255
)
_IPV6_DENIED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo among them
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),  # the retired site-local range
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
# inet_aton's number forms; ``re.ASCII`` keeps out other scripts' digits.
_HEXADECIMAL = re.compile(r"0x[0-9a-f]*", re.ASCII)
_OCTAL = re.compile(r"0[0-7]+", re.ASCII)
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)  # "08" is no number: a name


def _networks(table: tuple[tuple[str, str], ...]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), category) for cidr, category in table)


_DENIED = _networks(_IPV4_DENIED) + _networks(_IPV6_DENIED)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    # ``::`` and ``::1`` are in ::/96 too but are IPv6's own unspecified and loopback.
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def denied_category(address: IPAddress) -> str | None:
    """Why the default policy refuses ``address`` (``"loopback"``, ...); None if it does not."""
    address = _without_scope(address)
    inner = embedded_ipv4(address)
    if inner is not None:
        return denied_category(inner)
    for network, category in _DENIED:
        if address.version == network.version and address in network:
            return category
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"
    return None


def _without_scope(address: IPAddress) -> IPAddress:
    """``fe80::1%eth0`` as ``fe80::1``: the zone names an interface, not another address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


@dataclass(frozen=True, slots=True)
class Refusal:
    """An address the policy refuses: which one, of which host, and why."""

    host: str
    address: IPAddress
    category: str

    @property
    def message(self) -> str:
        of_host = "" if self.host == str(self.address) else f" (host {self.host})"
        return (
            f"refused to connect to {self.address}{of_host}, a {self.category} address: "
            f"{ALLOWED_NETWORKS_SETTING} admits it (for instance "
            f"{ipaddress.ip_network(self.address)})"
        )


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The default deny list, with ``allowed_networks`` admitting what it names."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> NetworkPolicy:
        """Raises ``ValueError`` naming a CIDR that is not one (host bits set included)."""
        return cls(tuple(parse_network(cidr) for cidr in cidrs))

    def admits(self, address: IPAddress) -> bool:
        return self.refusal(str(address), address) is None

    def refusal(self, host: str, address: IPAddress) -> Refusal | None:
        """Why connecting to ``address`` (which ``host`` resolved to) is refused; None if not."""
        category = denied_category(address)
        if category is None:
            return None
        plain = _without_scope(address)
        inner = embedded_ipv4(plain)
        for network in self.allowed_networks:
            for candidate in (plain, inner):
                same_version = candidate is not None and candidate.version == network.version
                if same_version and candidate in network:
                    return None
        return Refusal(host=host, address=plain, category=category)

    def refusal_for_host(self, host: str) -> Refusal | None:
        """Judge a URL's host without DNS: literal addresses (any spelling) and ``localhost``.

        None for a name whose addresses only DNS can tell: the worker judges those
        when it connects.
        """
        address = parse_ip_literal(host)
        if address is not None:
            return self.refusal(host, address)
        if is_localhost_name(host):
            for loopback in (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")):
                refusal = self.refusal(host, loopback)
                if refusal is not None:
                    return refusal
        return None


def parse_network(cidr: str) -> IPNetwork:
    """``10.0.0.0/8`` or a single address; ``ValueError`` for anything else."""
    try:
        return ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as error:
        raise ValueError(f"{cidr!r} is not a network in CIDR notation: {error}") from error


def is_localhost_name(host: str) -> bool:
    """``localhost`` and its subdomains, which RFC 6761 reserves for loopback."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host spells, however oddly; None if it is a name.

    Besides ``127.0.0.1``, ``[::1]`` and ``::ffff:127.0.0.1``, this reads what the C
    library's ``inet_aton`` reads and what a resolver would therefore connect to:
    one to four dot-separated parts, each decimal, octal (``0177``) or hexadecimal
    (``0x7f``), the last filling the remaining bytes (``2130706433``, ``127.1``).
    A trailing dot is ignored.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.replace("%25", "%")  # a URL's percent-encoded zone separator
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _parse_inet_aton(text.rstrip("."))


def _parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:  # inet_aton reads at most four parts
        return None
    numbers = [_parse_inet_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]
    *leading, last = values
    if any(value > 0xFF for value in leading):
        return None
    last_bits = 8 * (4 - len(leading))
    if last >= 1 << last_bits:
        return None
    value = last
    for position, byte in enumerate(leading):
        value |= byte << (24 - 8 * position)
    return ipaddress.IPv4Address(value)


def _parse_inet_number(part: str) -> int | None:
    lowered = part.lower()
    if _HEXADECIMAL.fullmatch(lowered):
        return int(lowered[2:] or "0", 16)
    if _OCTAL.fullmatch(lowered):
        return int(lowered, 8)
    if _DECIMAL.fullmatch(lowered):
        return int(lowered, 10)
    return None
