"""All four HTTP adapters: ImportError naming the extra when the client is missing, runtime check on first use."""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize(
    ("adapter", "client", "extra"),
    [
        ("urllib3", "urllib3", "tcp-keepalive[urllib3]"),
        ("requests", "requests", "tcp-keepalive[requests]"),
        ("httpx", "httpx", "tcp-keepalive[httpx]"),
        ("aiohttp", "aiohttp", "tcp-keepalive[aiohttp]"),
    ],
)
def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch, adapter: str, client: str, extra: str) -> None:
    """Importing keepalive.adapters.<client> without the client raises ImportError with the pip install hint."""
    monkeypatch.setitem(sys.modules, client, None)
    monkeypatch.delitem(sys.modules, f"keepalive.adapters.{adapter}", raising=False)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(f"keepalive.adapters.{adapter}")


def test_import_keepalive_adapters_imports_no_client() -> None:
    """The adapters package itself imports no HTTP client."""
    import subprocess

    code = (
        "import sys, keepalive, keepalive.adapters; "
        "loaded = [m for m in ('requests', 'urllib3', 'httpx', 'aiohttp') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_socks_without_pysocks_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """socks_proxy_manager() without PySocks raises ImportError saying what to install."""
    urllib3 = pytest.importorskip("urllib3")
    ka_urllib3 = pytest.importorskip("keepalive.adapters.urllib3")
    monkeypatch.setitem(sys.modules, "socks", None)
    monkeypatch.delitem(sys.modules, "urllib3.contrib.socks", raising=False)
    with (
        pytest.warns(urllib3.exceptions.DependencyWarning),
        pytest.raises(ImportError, match=r"urllib3\[socks\]"),
    ):
        ka_urllib3.socks_proxy_manager("socks5://127.0.0.1:1")


def test_first_adapter_runs_the_runtime_check_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making the first pool, adapter, transport or factory runs the once-per-process check; later ones don't."""
    for name in ("urllib3", "requests", "httpx", "aiohttp"):
        pytest.importorskip(name)
    import keepalive.adapters.aiohttp
    import keepalive.adapters.httpx
    import keepalive.adapters.requests
    import keepalive.adapters.urllib3
    from keepalive.checker import _runtime as checker_runtime

    calls: list[object] = []
    monkeypatch.setattr(checker_runtime, "run_once", lambda *args, **kwargs: calls.append(args))
    makers = [
        keepalive.adapters.urllib3.PoolManager,
        keepalive.adapters.requests.HTTPAdapter,
        keepalive.adapters.httpx.HTTPTransport,
        keepalive.adapters.aiohttp.socket_factory,
    ]
    for make in makers:
        made = make()
        assert len(calls) == 1
        if hasattr(made, "close"):
            made.close()
