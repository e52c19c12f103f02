"""The ``http`` handler cannot be turned against the worker's own network (real worker).

No test here sends anything to a non-loopback private or link-local address. Those
addresses reach the worker either literally or through an injected resolver, and
the worker connects through a ``RecordingConnector``: it notes every address it is
asked to connect to and connects to the test's loopback listener instead. A refused
request shows an empty record and a listener that saw no connection; an admitted
one shows the address the guard checked in the record, and the request itself at
the listener.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import httpcore
import pytest
import trustme

from jobsched.core.models import JobSpec, Run, RunStatus
from jobsched.core.network_policy import IPAddress, NetworkPolicy
from jobsched.storage.database import SQLStorage
from jobsched.worker.handlers.http_network import (
    USER_AGENT,
    AddressRefusedError,
    guarded_client,
    system_resolver,
)
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import StartWorker, final_run, job_spec
from tests.integration.worker.local_http_server import LocalHttpServer, ReceivedRequest


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The guard is the same on every database: these tests run on SQLite only."""
    return sqlite_url


@pytest.fixture
async def listener() -> AsyncIterator[LocalHttpServer]:
    server = LocalHttpServer()
    await server.start()
    yield server
    await server.close()


class RecordingConnector(httpcore.AsyncNetworkBackend):
    """Notes each (address, port) it is asked for; connects to ``listener`` instead."""

    def __init__(self, listener: LocalHttpServer) -> None:
        self.asked: list[tuple[str, int]] = []
        self._listener = listener
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        return await self._inner.connect_tcp("127.0.0.1", self._listener.port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def fixed_resolver(names: dict[str, list[str]]) -> Any:
    """A resolver knowing ``names`` only; any other host is resolved as the worker would."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        if host in names:
            return [ipaddress.ip_address(address) for address in names[host]]
        return await system_resolver(host, port)

    return resolve


def http_job(url: str, **payload: Any) -> JobSpec:
    return job_spec("http", payload={"url": url, **payload})


async def run_all(storage: SQLStorage, urls: list[str], **payload: Any) -> list[Run]:
    """Create a run for each URL and wait until every one has ended."""
    runs = [await create_due_run(storage, http_job(url, **payload)) for url in urls]
    return [await wait_until(functools.partial(final_run, storage, run.id)) for run in runs]


def assert_refused(done: Run, address: str) -> None:
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1), done.last_error
    assert done.last_error is not None
    assert done.last_error.startswith("RequestRefusedError: "), done.last_error
    assert f"refused to connect to {address}" in done.last_error
    assert "worker.http.allowed_networks admits it" in done.last_error
    assert "nothing was sent" in done.last_error


# One address of each range refused by default, written as a URL host.
DENIED_HOSTS = {
    "0.0.0.0": "0.0.0.0",  # unspecified
    "10.1.2.3": "10.1.2.3",  # private
    "172.16.5.4": "172.16.5.4",
    "192.168.1.1": "192.168.1.1",
    "100.64.0.1": "100.64.0.1",  # shared
    "169.254.169.254": "169.254.169.254",  # link-local: cloud metadata
    "224.0.0.1": "224.0.0.1",  # multicast
    "240.0.0.1": "240.0.0.1",  # reserved
    "255.255.255.255": "255.255.255.255",
    "192.0.0.8": "192.0.0.8",
    "198.18.0.1": "198.18.0.1",  # benchmarking
    "192.0.2.10": "192.0.2.10",  # documentation
    "198.51.100.10": "198.51.100.10",
    "203.0.113.10": "203.0.113.10",
    "[::]": "::",
    "[::1]": "::1",
    "[fc00::1]": "fc00::1",  # unique local
    "[fd12:3456::1]": "fd12:3456::1",
    "[fe80::1]": "fe80::1",  # link-local
    "[ff02::1]": "ff02::1",  # multicast
    "[2001:db8::1]": "2001:db8::1",  # documentation
    "[::ffff:10.1.2.3]": "::ffff:a01:203",  # IPv4-mapped spellings
    "[::ffff:169.254.169.254]": "::ffff:a9fe:a9fe",
    "[::ffff:127.0.0.1]": "::ffff:7f00:1",
    "[64:ff9b::a01:203]": "64:ff9b::a01:203",  # NAT64 of 10.1.2.3
    "[2002:a01:203::1]": "2002:a01:203::1",  # 6to4 of 10.1.2.3
}


async def test_every_denied_range_is_refused_before_connecting(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    connector = RecordingConnector(listener)
    await start_worker(HandlerRegistry(), http_connector=connector)

    urls = [f"http://{host}:{listener.port}/hook" for host in DENIED_HOSTS]
    for done, address in zip(await run_all(storage, urls), DENIED_HOSTS.values(), strict=True):
        assert_refused(done, address)
    assert connector.asked == []
    assert listener.connections == 0


# Odd spellings of 127.0.0.1, the address the test's listener is on.
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "127.1",
    "0177.1",
    "localhost",
]


async def test_odd_spellings_of_loopback_are_refused_before_connecting(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    await start_worker(HandlerRegistry())

    urls = [f"http://{host}:{listener.port}/" for host in LOOPBACK_SPELLINGS]
    for done in await run_all(storage, urls):
        assert_refused(done, "127.0.0.1")
    assert listener.connections == 0


async def test_the_same_spellings_reach_loopback_once_it_is_allowed(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    """The counterpart of the test above: refused there by the policy, not by chance."""
    await start_worker(HandlerRegistry(), http={"allowed_networks": ["127.0.0.0/8", "::1/128"]})

    urls = [f"http://{host}:{listener.port}/" for host in LOOPBACK_SPELLINGS]
    for done in await run_all(storage, urls):
        assert done.status is RunStatus.SUCCEEDED, done.last_error
    hosts = sorted(request.headers["host"] for request in listener.requests)
    assert hosts == sorted(f"{host}:{listener.port}" for host in LOOPBACK_SPELLINGS)


async def test_a_name_is_refused_if_any_of_its_addresses_is_denied(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    connector = RecordingConnector(listener)
    resolver = fixed_resolver(
        {
            "metadata.internal.test": ["169.254.169.254"],
            "mixed.internal.test": ["93.184.215.14", "10.9.8.7"],
            "mapped.internal.test": ["::ffff:192.168.0.1"],
        }
    )
    await start_worker(HandlerRegistry(), http_resolver=resolver, http_connector=connector)

    done = await run_all(
        storage,
        [
            f"http://metadata.internal.test:{listener.port}/latest/meta-data/",
            f"https://mixed.internal.test:{listener.port}/",
            f"http://mapped.internal.test:{listener.port}/",
        ],
    )
    assert_refused(done[0], "169.254.169.254 (host metadata.internal.test)")
    assert_refused(done[1], "10.9.8.7 (host mixed.internal.test)")
    assert_refused(done[2], "::ffff:c0a8:1 (host mapped.internal.test)")
    assert connector.asked == []
    assert listener.connections == 0


async def test_allowed_networks_admit_a_range_and_the_checked_address_is_the_one_connected(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    connector = RecordingConnector(listener)
    # A rebinding resolver: a second lookup would give a refused address.
    answers = iter([["10.20.30.40"], ["169.254.169.254"]])

    async def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        if host == "billing.internal.test":
            return [ipaddress.ip_address(address) for address in next(answers)]
        return await system_resolver(host, port)

    await start_worker(
        HandlerRegistry(),
        http={"allowed_networks": ["10.20.0.0/16"]},
        http_resolver=rebinding,
        http_connector=connector,
    )

    admitted, other = await run_all(
        storage,
        [
            f"http://billing.internal.test:{listener.port}/charge",
            f"http://10.21.0.1:{listener.port}/",
        ],
    )
    assert admitted.status is RunStatus.SUCCEEDED, admitted.last_error
    assert_refused(other, "10.21.0.1")  # outside the admitted range
    assert connector.asked == [("10.20.30.40", listener.port)]
    (request,) = listener.requests
    assert request.headers["host"] == f"billing.internal.test:{listener.port}"
    assert request.target == "/charge"


async def test_a_redirect_to_a_denied_address_is_refused(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    connector = RecordingConnector(listener)

    def redirect(request: ReceivedRequest) -> tuple[int, bytes, dict[str, str]]:
        return 302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}

    listener.respond = redirect
    resolver = fixed_resolver({"public.example.test": ["93.184.215.14"]})
    await start_worker(HandlerRegistry(), http_resolver=resolver, http_connector=connector)

    (done,) = await run_all(
        storage, [f"http://public.example.test:{listener.port}/go"], follow_redirects=True
    )
    assert_refused(done, "169.254.169.254")
    assert "GET http://169.254.169.254/latest/meta-data/" in (done.last_error or "")
    # The first hop was admitted and made; the second never connected.
    assert connector.asked == [("93.184.215.14", listener.port)]
    assert listener.connections == 1


async def test_redirects_are_not_followed_unless_asked_and_at_most_five(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    def redirect(request: ReceivedRequest) -> tuple[int, bytes] | tuple[int, bytes, dict[str, str]]:
        hop = int(request.target.rsplit("/", 1)[1])
        if request.target.startswith("/short/") and hop == 3:
            return 200, b"arrived"
        prefix = request.target.rsplit("/", 1)[0]
        return 302, b"", {"Location": f"{prefix}/{hop + 1}"}

    listener.respond = redirect
    await start_worker(HandlerRegistry(), http={"allowed_networks": ["127.0.0.0/8"]})

    not_asked = await run_all(storage, [f"http://127.0.0.1:{listener.port}/short/0"])
    short, endless = await run_all(
        storage,
        [f"http://127.0.0.1:{listener.port}/short/0", f"http://127.0.0.1:{listener.port}/long/0"],
        follow_redirects=True,
    )
    assert not_asked[0].status is RunStatus.DEAD
    assert "HTTP 302" in (not_asked[0].last_error or "")
    assert "follow_redirects is false" in (not_asked[0].last_error or "")
    assert short.status is RunStatus.SUCCEEDED
    assert short.result == {"status_code": 200, "body": "arrived"}
    assert endless.status is RunStatus.DEAD
    assert "redirected more than 5 times" in (endless.last_error or "")
    by_run = {
        run.id: [r for r in listener.requests if r.headers["jobsched-run-id"] == str(run.id)]
        for run in (short, endless)
    }
    assert [r.target for r in by_run[short.id]] == [f"/short/{hop}" for hop in range(4)]
    # The first request and 5 redirects; the 6th redirect is not followed.
    assert [r.target for r in by_run[endless.id]] == [f"/long/{hop}" for hop in range(6)]
    # The hops of one execution carry its one attempt id.
    assert len({r.headers["jobsched-attempt-id"] for r in by_run[short.id]}) == 1


async def test_credentials_are_not_carried_to_another_origin(
    storage: SQLStorage, start_worker: StartWorker, listener: LocalHttpServer
) -> None:
    def redirect(request: ReceivedRequest) -> tuple[int, bytes] | tuple[int, bytes, dict[str, str]]:
        if request.target == "/first":
            return 307, b"", {"Location": f"http://localhost:{listener.port}/second"}
        return 200, b"ok"

    listener.respond = redirect
    await start_worker(HandlerRegistry(), http={"allowed_networks": ["127.0.0.0/8", "::1/128"]})

    headers = {
        "Authorization": "Bearer a",
        "X-Api-Key": "b",
        "X-Signing-Secret": "c",
        "X-Team": "d",
    }
    (done,) = await run_all(
        storage,
        [f"http://127.0.0.1:{listener.port}/first"],
        headers=headers,
        follow_redirects=True,
    )
    assert done.status is RunStatus.SUCCEEDED, done.last_error
    first, second = listener.requests
    assert {name: first.headers[name.lower()] for name in headers} == headers
    assert "authorization" not in second.headers
    assert "x-api-key" not in second.headers
    assert "x-signing-secret" not in second.headers
    assert second.headers["x-team"] == "d"


async def test_headers_from_the_environment_and_user_agent(
    storage: SQLStorage,
    start_worker: StartWorker,
    listener: LocalHttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_API_TOKEN", "Bearer from-the-worker")
    monkeypatch.setenv("NOT_LISTED", "never sent")
    await start_worker(
        HandlerRegistry(),
        http={"allowed_networks": ["127.0.0.0/8"], "env_allowlist": ["BILLING_API_TOKEN"]},
    )

    sent, refused = await run_all(
        storage,
        [f"http://127.0.0.1:{listener.port}/a"],
        headers={"Authorization": {"from_env": "BILLING_API_TOKEN"}},
    ) + await run_all(
        storage,
        [f"http://127.0.0.1:{listener.port}/b"],
        headers={"Authorization": {"from_env": "NOT_LISTED"}},
    )
    assert sent.status is RunStatus.SUCCEEDED
    assert refused.status is RunStatus.DEAD
    assert "NOT_LISTED is not in worker.http.env_allowlist" in (refused.last_error or "")
    (request,) = listener.requests
    assert request.headers["authorization"] == "Bearer from-the-worker"
    assert request.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("jobsched/")


async def test_tls_uses_the_url_host_as_server_name_while_connecting_to_the_checked_address(
    tmp_path: Any,
) -> None:
    """Straight on the handler's client: the worker's is the same, with the default CA."""
    authority = trustme.CA()
    certificate = authority.issue_cert("billing.internal.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    names_seen: list[str | None] = []

    def note_server_name(
        _socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext
    ) -> None:
        names_seen.append(name)

    server_context.sni_callback = note_server_name
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    server = LocalHttpServer()
    await server.start(ssl_context=server_context)
    connector = RecordingConnector(server)
    resolver = fixed_resolver({"billing.internal.test": ["10.20.30.40"]})
    policy = NetworkPolicy.from_cidrs(["10.20.0.0/16"])
    try:
        async with guarded_client(
            policy, resolver=resolver, connector=connector, ssl_context=client_context
        ) as client:
            response = await client.get(f"https://billing.internal.test:{server.port}/")
            with pytest.raises(AddressRefusedError):
                await client.get(f"https://10.21.0.1:{server.port}/")
    finally:
        await server.close()
    assert response.status_code == 200
    assert names_seen == ["billing.internal.test"]
    assert connector.asked == [("10.20.30.40", server.port)]
    assert server.requests[0].headers["host"] == f"billing.internal.test:{server.port}"
