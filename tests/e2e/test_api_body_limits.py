"""A 20 MB body sent to a real ``jobsched api`` is refused with 413 before it is read whole:
the process's memory (resident and peak) does not grow with what a client sends.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import JobschedProcess, free_port

pytestmark = pytest.mark.e2e

BODY_BYTES = 20 * 1024 * 1024
CHUNK = b"x" * 65536
GROWTH_MAX_KIB = 4 * 1024


def _memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (the peak) of ``pid``, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0])
    return values


@pytest.fixture
def api_process(database_url: str, tmp_path: Path) -> Iterator[tuple[JobschedProcess, int]]:
    port = free_port()
    env = {"JOBSCHED_DATABASE_URL": database_url}
    process = JobschedProcess(["api", "--port", str(port)], env, tmp_path / "api.log").start()
    try:
        process.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield process, port
    finally:
        process.stop()


def _send_huge(port: int, *, chunked: bool) -> bytes:
    """POST a 20 MB body to /jobs; the first bytes of the answer (sending stops when the
    server stops reading)."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % BODY_BYTES
    head = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + framing + b"\r\n\r\n")

        def send_body() -> None:
            try:
                for _ in range(BODY_BYTES // len(CHUNK)):
                    if chunked:
                        connection.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    else:
                        connection.sendall(CHUNK)
                if chunked:
                    connection.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed: the rest is never read

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            received = connection.recv(65536)
            if not received:
                break
            answer += received
        connection.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_20_mb_body_is_refused_with_413_without_the_api_growing(
    api_process: tuple[JobschedProcess, int], chunked: bool
) -> None:
    process, port = api_process
    url = f"http://127.0.0.1:{port}"
    # Warm up every path the refusal takes, then measure.
    for _ in range(3):
        small = httpx.post(f"{url}/jobs", json={"type": "noop", "payload": {"a": "x" * 1000}})
        assert small.status_code == 201, small.text
    _send_huge(port, chunked=chunked)
    before = _memory_kib(process.process.pid)

    answer = _send_huge(port, chunked=chunked)

    after = _memory_kib(process.process.pid)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:500]
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["type"] == "https://jobsched.dev/problems/body-too-large"
    assert problem["errors"][0]["field"] == "body"
    growth = {name: after[name] - before[name] for name in after}
    print(f"\n{'chunked' if chunked else 'content-length'}: before {before} KiB, after {after} KiB")
    assert growth["VmRSS"] < GROWTH_MAX_KIB, (before, after)
    assert growth["VmHWM"] < GROWTH_MAX_KIB, (before, after)
    # The API still serves, and wrote nothing for the refused bodies.
    listed = httpx.get(f"{url}/jobs").json()["items"]
    assert len(listed) == 3
