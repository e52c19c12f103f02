"""The ``http`` handler's client: it connects only to addresses the network policy admits.

The check happens where the connection is made, on the address connected to:
httpcore asks its network backend to connect to the URL's host; the
``GuardedNetworkBackend`` resolves the host itself, refuses (``AddressRefusedError``)
if *any* of its addresses is refused by the ``NetworkPolicy``, and otherwise
connects to one of the addresses it checked. httpcore still sends the URL's host in
the ``Host`` header and as the TLS server name, and verifies the certificate
against it. A name that resolves to something else a moment later (DNS rebinding)
changes nothing: no second lookup is made. Every redirect is a new request and goes
through the same check. A refused connection is never attempted: nothing is sent.

The client follows no redirects itself (the handler does, when asked), keeps no
cookies between requests (one job's server must not set cookies another job
sends) and ignores proxy environment variables (a proxy would connect on its side,
out of the policy's sight).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import metadata

import httpcore
import httpx

from jobsched.core.network_policy import (
    IPAddress,
    NetworkPolicy,
    Refusal,
    is_localhost_name,
    parse_ip_literal,
)
from jobsched.worker.errors import NonRetryableError

# Given a host and a port, its addresses (all of them: each one is checked).
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
_LOCALHOST_ADDRESSES = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


def _version() -> str:
    try:
        return metadata.version("jobsched")
    except metadata.PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


USER_AGENT = f"jobsched/{_version()}"


class AddressRefusedError(NonRetryableError):
    """The host of a request resolved to an address the network policy refuses."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(refusal.message)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses a connection to ``host`` could reach, as the C library resolves them.

    A literal address in any spelling ``inet_aton`` reads is taken as it is, and
    ``localhost`` names are loopback (RFC 6761), without asking DNS.
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        return [literal]
    if is_localhost_name(host):
        return list(_LOCALHOST_ADDRESSES)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _unique(ipaddress.ip_address(info[4][0]) for info in infos)


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host only through addresses ``policy`` admits (see the module doc).

    ``resolver`` finds a host's addresses and ``connector`` opens the connection to
    the chosen one; both can be replaced (a test resolves names to addresses it must
    never reach, and records what would have been connected to).
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        resolver: Resolver = system_resolver,
        connector: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._connector = connector or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            refusal = self._policy.refusal(host, address)
            if refusal is not None:
                raise AddressRefusedError(refusal)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._connector.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # the next address may answer
        assert failure is not None  # _resolve returns at least one address
        raise failure

    async def _resolve(
        self,
        host: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109  # httpcore's connect timeout, passed on
    ) -> Sequence[IPAddress]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolver(host, port)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout}s") from error
        except OSError as error:  # socket.gaierror among them
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("the http handler does not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._connector.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with its connection pool connecting through ``network_backend``."""

    def __init__(
        self,
        network_backend: httpcore.AsyncNetworkBackend,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        # AsyncHTTPTransport takes no network backend; its request mapping and error
        # translation are worth keeping, so only its pool is replaced (httpx is
        # pinned, and the guard's tests fail if this stops taking effect).
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network_backend,
        )


def _cookieless_jar() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def guarded_client(
    policy: NetworkPolicy,
    *,
    resolver: Resolver = system_resolver,
    connector: httpcore.AsyncNetworkBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """The client the ``http`` handler sends with (see the module doc).

    ``ssl_context`` verifies servers' certificates (default: the certifi bundle).
    """
    backend = GuardedNetworkBackend(policy, resolver=resolver, connector=connector)
    return httpx.AsyncClient(
        transport=GuardedTransport(backend, ssl_context=ssl_context),
        follow_redirects=False,
        cookies=_cookieless_jar(),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )
