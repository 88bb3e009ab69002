"""What the first wrapped connect leaves to its thread and what it does on the caller's (maybe an event loop's):
the default policy's cheap path imports no kube-proxy reader, no checker and no heavy standard-library module;
the runtime check imports only its declared steps (each one a short step between two pauses); pacing is per
thread. Each check runs in a fresh interpreter, where imports are not already done by other tests.

The stall itself is a number: ``python -m benchmarks --only startup`` measures it (no timing asserts here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from keepalive._path._pace import set_paced
from keepalive.checker import _runtime as checker_runtime
from tests.helpers import environ_without_keepalive

ROOT = Path(__file__).resolve().parent.parent
KUBEADM_CONFIGMAP = ROOT / "tests" / "data" / "kube-proxy" / "kubeadm-configmap.yaml"

#: Modules the caller's thread has no business importing for the default policy when no kube-proxy file is named.
HEAVY = (
    "keepalive._path._kubeproxy",
    "keepalive._path._kubeconfig",
    "keepalive._path._finding",
    "keepalive._path._parse",
    "keepalive.checker._check",
    "pathlib",
    "json",
    "ipaddress",
    "urllib.parse",
    "tempfile",
    "yaml",
)


def _run(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter without KEEPALIVE_* settings (plus ``env``); ``code`` sets ``result``,
    printed as JSON afterwards (json is imported only then: some checks are about what is imported)."""
    clean = environ_without_keepalive(PYTHONPATH=str(ROOT), **env)
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport json\nprint(json.dumps(result))\n"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_default_policy_cheap_path_imports_no_reader_checker_or_heavy_module() -> None:
    """With nothing named, the default policy reads the environment and one sysctl, and imports only the model."""
    code = f"""
import sys
import keepalive
keepalive.default_policy()
result = {{"loaded": sorted(m for m in {HEAVY!r} if m in sys.modules)}}
"""
    assert _run(code)["loaded"] == []


def test_default_policy_reads_kubeadm_configmap_without_importing_pyyaml() -> None:
    """A kube-proxy ConfigMap as kubeadm writes it is read by the strict YAML subset (exactly as PyYAML reads it,
    tests/test_kubeproxy_yaml.py), so the caller's thread does not pay PyYAML's import; the evidence is the same."""
    code = """
import sys
import keepalive
from keepalive._path._model import gather
keepalive.default_policy()
yaml_loaded = "yaml" in sys.modules
model = gather(evidence_only=True)
result = {"yaml": yaml_loaded, "evidence": [e.label for e in model.evidence],
          "origin": model.kube_proxy.origin if model.kube_proxy else None}
"""
    found = _run(code, KEEPALIVE_KUBE_PROXY_CONFIG=str(KUBEADM_CONFIGMAP))
    assert found["yaml"] is False
    assert found["origin"] is not None
    assert any("kube-proxy conntrack.tcpEstablishedTimeout" in str(label) for label in found["evidence"])  # type: ignore[union-attr]


def test_kubeadm_configmap_gives_the_same_kube_proxy_with_and_without_the_subset() -> None:
    """The subset is only a faster road: forcing PyYAML (a document the subset refuses) gives the same values."""
    code = f"""
import sys
from keepalive._path import _kubeyaml
from keepalive._path._kubeproxy import read_kube_proxy_file
fast, _ = read_kube_proxy_file({str(KUBEADM_CONFIGMAP)!r})
_kubeyaml.load_block_yaml = lambda text: (None, "refused for the test")
slow, _ = read_kube_proxy_file({str(KUBEADM_CONFIGMAP)!r})
fields = ("mode", "tcp_established_timeout", "tcp_close_wait_timeout", "tcp_be_liberal", "max_per_core", "min",
          "ipvs_tcp_timeout", "defaulted", "problems", "refused")
result = {{"fast": [repr(getattr(fast, f)) for f in fields], "slow": [repr(getattr(slow, f)) for f in fields],
          "yaml_used": sys.modules.get("yaml") is not None}}
"""
    found = _run(code)
    assert found["yaml_used"] is True
    assert found["fast"] == found["slow"]


def test_runtime_check_imports_nothing_beyond_its_steps() -> None:
    """Every module the check needs is one of checker._runtime.STEPS (imported one per step, with a pause after
    each): after those, judging a policy imports nothing more -- and never tempfile, json or PyYAML."""
    code = """
import importlib, sys
import keepalive
from keepalive.checker import _runtime
keepalive.default_policy()
for name in _runtime.STEPS:
    importlib.import_module(name)
before = set(sys.modules)
_runtime.check_policy(None)
result = {"new": sorted(set(sys.modules) - before),
          "heavy": sorted(m for m in ("tempfile", "json", "yaml", "shutil") if m in sys.modules)}
"""
    found = _run(code)
    assert found["new"] == []
    assert found["heavy"] == []


def test_steps_are_ordered_leaves_first() -> None:
    """Each step imports no keepalive module of a later step, so one step runs one module's body."""
    code = """
import importlib, sys
from keepalive.checker import _runtime
late = []
for index, name in enumerate(_runtime.STEPS):
    importlib.import_module(name)
    late += [(name, later) for later in _runtime.STEPS[index + 1:] if later in sys.modules]
result = {"late": late}
"""
    assert _run(code)["late"] == []


def test_pacing_is_per_thread() -> None:
    """set_paced() marks only the calling thread: the runtime check's pauses never slow the CLI or other threads."""
    seen: list[bool] = []

    def other() -> None:
        before = set_paced(False)
        seen.append(before)

    assert set_paced(True) is False
    try:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen == [False]
        assert set_paced(True) is True  # this thread still paced
    finally:
        set_paced(False)


def test_runtime_check_thread_is_paced_and_leaves_callers_unpaced() -> None:
    """The check's thread runs paced (its pauses give the GIL away) and the caller's thread stays unpaced."""
    code = """
import threading
from keepalive._path import _pace
from keepalive.checker import _runtime
seen = []
real = _runtime.check_policy
def spy(policy):
    seen.append((threading.current_thread().name, _pace.set_paced(True)))
    real(policy)
_runtime.check_policy = spy
_runtime.run_once(None)
_runtime.wait(30)
result = {"seen": seen, "caller_paced": _pace.set_paced(False)}
"""
    found = _run(code)
    assert found["seen"] == [["keepalive-check", True]]
    assert found["caller_paced"] is False


def test_steps_list_names_importable_modules() -> None:
    """STEPS holds module names that exist (a renamed module would make a step fail silently in the thread)."""
    import importlib.util

    assert all(importlib.util.find_spec(name) is not None for name in checker_runtime.STEPS)


_FIRST_CONNECT = """
import socket, sys, threading
{imports}
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
seen = []

class Recorder:
    # Consulted for every module not yet imported: records which thread imports it, imports nothing itself.
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is threading.main_thread():
            seen.append(name)
        return None

{connect}
sys.meta_path.insert(0, Recorder())
{run}
sys.meta_path.pop(0)
from keepalive.checker import _runtime
finished = _runtime.wait(60)
result = {{"imported": sorted(set(seen)), "check_finished": finished, "mode": {mode!r}}}
"""

_RUNTIMES = {
    "asyncio": (
        "import asyncio",
        "keepalive.asyncio",
        "async def connect():\n    _, writer = await {module}.open_connection('127.0.0.1', port)\n    writer.close()",
        "asyncio.run(connect())",
    ),
    "anyio": (
        "import anyio",
        "keepalive.anyio",
        "async def connect():\n    stream = await {module}.connect_tcp('127.0.0.1', port)\n    await stream.aclose()",
        "anyio.run(connect, backend='asyncio')",
    ),
    "trio": (
        "import trio",
        "keepalive.trio",
        "async def connect():\n    stream = await {module}.open_tcp_stream('127.0.0.1', port)\n"
        "    await stream.aclose()",
        "trio.run(connect)",
    ),
}


@pytest.mark.parametrize("runtime", sorted(_RUNTIMES))
def test_first_wrapped_connect_imports_nothing_on_the_loop_beyond_the_runtimes_own(runtime: str) -> None:
    """An async wrapper loads what its first connect needs when it is imported (``_async_common.PRELOAD``), before
    the loop runs: the first wrapped connect of a process imports, on the loop's thread, nothing that the runtime's
    own first connect does not import too (in another fresh process). The runtime check's imports happen in its
    thread."""
    pytest.importorskip(runtime)
    base, wrapper, connect, run = _RUNTIMES[runtime]
    found = {}
    for mode, module in (("keepalive", wrapper), ("plain", runtime)):
        imports = f"{base}\nimport {wrapper}"  # both processes load the wrapper: only the connect differs
        code = _FIRST_CONNECT.format(imports=imports, connect=connect.format(module=module), run=run, mode=mode)
        found[mode] = _run(code)
        assert found[mode]["check_finished"] is True
    extra = sorted(set(found["keepalive"]["imported"]) - set(found["plain"]["imported"]))  # type: ignore[arg-type]
    assert extra == []


def test_preload_names_the_modules_the_first_connect_needs() -> None:
    """PRELOAD is what the default policy and the runtime check's starter import: a fresh process that imports
    the wrapper has them, and without the preload (KEEPALIVE_CHECK=0 skips the starter) it does not load it."""
    from keepalive._async_common import PRELOAD

    code = "import sys\nimport keepalive.asyncio\nresult = {{'loaded': [m for m in {names!r} if m in sys.modules]}}"
    assert _run(code.format(names=PRELOAD))["loaded"] == list(PRELOAD)
    off = _run(code.format(names=PRELOAD), KEEPALIVE_CHECK="0")["loaded"]
    assert off == ["keepalive._path._model"]
