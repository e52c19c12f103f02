"""One ``jobsched standalone`` serves every client and CLI test of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.server import Server, standalone


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with standalone(tmp_path_factory.mktemp("client-server")) as running:
        yield running
