"""Fixtures shared by all tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import keepalive
from keepalive import _runtime


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
    keepalive.reset_default_policy()
    _runtime.reset()
    yield
    keepalive.reset_default_policy()
    _runtime.reset()


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """anyio's plugin: tests marked ``@pytest.mark.anyio`` run on the backend given by ``params``."""
    return getattr(request, "param", "asyncio")
