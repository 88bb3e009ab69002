"""Fixtures shared by all tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import keepalive
from keepalive import _runtime
from keepalive.checker import _runtime as checker_runtime
from tests.http_servers import OriginServer, ProxyServer, SocksServer, serving


@pytest.fixture(autouse=True)
def _fresh_default_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without KEEPALIVE_* settings leaking in and with no cached default policy."""
    import os

    for name in list(os.environ):
        if name.startswith("KEEPALIVE_") and name not in {
            "KEEPALIVE_REQUIRE_LAB",
            "KEEPALIVE_REQUIRE_SERVICES",
        }:
            monkeypatch.delenv(name)
    checker_runtime.wait(10)  # a background check of the last test must not cache the default under this one
    keepalive.reset_default_policy()
    _runtime.reset()
    yield
    checker_runtime.wait(10)
    keepalive.reset_default_policy()
    _runtime.reset()


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """anyio's plugin: tests marked ``@pytest.mark.anyio`` run on the backend given by ``params``."""
    return getattr(request, "param", "asyncio")


# Loopback HTTP servers shared by the HTTP adapter tests (tests/http_servers.py).


@pytest.fixture
def origin() -> Iterator[OriginServer]:
    """A plain HTTP/1.1 origin on 127.0.0.1 that reports each request's client port."""
    with serving(OriginServer()) as server:
        yield server


@pytest.fixture
def tls_origin() -> Iterator[OriginServer]:
    """The same origin behind TLS (certificate from tests/data)."""
    with serving(OriginServer(tls=True)) as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[ProxyServer]:
    """A forwarding and CONNECT proxy on 127.0.0.1."""
    with serving(ProxyServer()) as server:
        yield server


@pytest.fixture
def socks() -> Iterator[SocksServer]:
    """A SOCKS5 proxy on 127.0.0.1."""
    with serving(SocksServer()) as server:
        yield server
