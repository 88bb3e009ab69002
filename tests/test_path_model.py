"""The path model's rules (docs/policy.md) as a table: evidence -> path timeout -> default policy, and the judge.

Each row runs against real files (a fake proc tree, a kube-proxy configuration) through the real environment
variables, and its answer must not depend on what the process asked first.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import keepalive
from keepalive import BUILTIN_POLICY, Policy
from keepalive._path import Fit, judge
from keepalive._path._model import gather
from keepalive._policy import SHORTEST_POLICY, recommended_policy, resolve_default_policy
from tests.checker_support import make_proc

#: kubeadm's stock KubeProxyConfiguration: every conntrack field null (kube-proxy's defaults: 24 h).
STOCK_KUBEADM = {
    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
    "kind": "KubeProxyConfiguration",
    "mode": "",
    "conntrack": {"maxPerCore": None, "min": None, "tcpCloseWaitTimeout": None, "tcpEstablishedTimeout": None},
}
IPVS = {**STOCK_KUBEADM, "mode": "ipvs", "ipvs": {"tcpTimeout": "0s"}}

# (row id, environment, node established timeout, kube-proxy config, path timeout, named, default policy)
RULES = [
    ("nothing known", {}, None, None, None, False, BUILTIN_POLICY),
    ("path timeout named", {"KEEPALIVE_PATH_TIMEOUT": "350"}, None, None, 350, True, Policy.below(350)),
    ("middlebox named", {"KEEPALIVE_MIDDLEBOX": "azure-lb"}, None, None, 240, True, Policy.below(240)),
    (
        "path timeout and middlebox: the minimum",
        {"KEEPALIVE_PATH_TIMEOUT": "3600", "KEEPALIVE_MIDDLEBOX": "azure-lb"},
        None,
        None,
        240,
        True,
        Policy.below(240),
    ),
    (
        "named long path is the user's word",
        {"KEEPALIVE_PATH_TIMEOUT": "86400"},
        None,
        None,
        86400,
        True,
        Policy.below(86400),
    ),
    ("node conntrack longer than built-in", {}, 86400, None, 86400, False, BUILTIN_POLICY),
    ("node conntrack tighter than built-in", {}, 40, None, 40, False, Policy.below(40)),
    ("stock kubeadm kube-proxy", {}, 432000, STOCK_KUBEADM, 86400, False, BUILTIN_POLICY),
    ("kube-proxy in IPVS mode", {}, 432000, IPVS, 900, False, BUILTIN_POLICY),
    (
        "named path, tighter node: the minimum",
        {"KEEPALIVE_PATH_TIMEOUT": "3600"},
        120,
        None,
        120,
        True,
        Policy.below(120),
    ),
    (
        "explicit timings are the policy, other fields from the model",
        {"KEEPALIVE_IDLE": "300", "KEEPALIVE_MIDDLEBOX": "azure-lb"},
        None,
        None,
        240,
        True,
        Policy.below(240).replace(idle=300),
    ),
]


def _environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], node: int | None, proxy: object
) -> None:
    sysctls: dict[str, int | str | bytes | None] = {"net.netfilter.nf_conntrack_tcp_timeout_established": node}
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path / "proc", sysctls)))
    if proxy is not None:
        config = tmp_path / "kube-proxy.json"
        config.write_text(json.dumps(proxy))
        monkeypatch.setenv("KEEPALIVE_KUBE_PROXY_CONFIG", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("env", "node", "proxy", "path_timeout", "named", "expected"),
    [row[1:] for row in RULES],
    ids=[row[0] for row in RULES],
)
def test_rules_table(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    node: int | None,
    proxy: object,
    path_timeout: float | None,
    named: bool,
    expected: Policy,
) -> None:
    """The path timeout is the minimum over all evidence; a named path gives below(min); node evidence alone
    never loosens the built-in; explicit timings are the policy. The same answer from every entry point."""
    _environment(monkeypatch, tmp_path, env, node, proxy)
    model = gather()
    assert model.path_timeout == path_timeout
    assert model.named is named
    assert keepalive.default_policy() == expected
    report = keepalive.check()
    assert report.path_timeout == path_timeout
    assert report.policy == expected
    if not any(name in env for name in ("KEEPALIVE_IDLE", "KEEPALIVE_INTERVAL", "KEEPALIVE_COUNT")):
        assert report.recommended_policy == expected  # the checker recommends what the default already is
        assert report.exit_code < 2  # never an error about the library's own default


@pytest.mark.parametrize("row", RULES, ids=[row[0] for row in RULES])
def test_same_answer_whatever_the_call_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, row: tuple) -> None:  # type: ignore[type-arg]
    _, env, node, proxy, _, _, expected = row
    _environment(monkeypatch, tmp_path, env, node, proxy)
    calls: dict[str, Callable[[], Policy]] = {
        "resolve": resolve_default_policy,
        "default": keepalive.default_policy,
        "check": lambda: keepalive.check().policy,
        "wrapper": lambda: keepalive._runtime.resolve(None),
    }
    for order in itertools.permutations(calls):
        keepalive.reset_default_policy()
        assert [calls[name]() for name in order] == [expected] * len(order), order


def test_azure_lb_with_a_long_path_timeout_is_not_an_error_about_our_own_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 14: KEEPALIVE_PATH_TIMEOUT=3600 KEEPALIVE_MIDDLEBOX=azure-lb gave idle 300, then an ERROR against 240 s."""
    _environment(
        monkeypatch, tmp_path, {"KEEPALIVE_PATH_TIMEOUT": "3600", "KEEPALIVE_MIDDLEBOX": "azure-lb"}, None, None
    )
    policy = keepalive.default_policy()
    assert policy.idle + policy.interval < 240
    report = keepalive.check()
    assert "policy-fits-path-timeout" in {f.code for f in report.findings}
    assert not report.by_severity("error")


def test_a_path_timeout_under_three_seconds_gives_the_shortest_policy() -> None:
    assert recommended_policy(2, True, "x")[0] == SHORTEST_POLICY
    assert recommended_policy(2, False)[0] == SHORTEST_POLICY


@pytest.mark.parametrize(
    ("idle", "interval", "timeout", "fit"),
    [
        (60, 10, 240, Fit.FITS),
        (229, 10, 240, Fit.FITS),
        (230, 10, 240, Fit.SECOND_PROBE_LATE),
        (239, 10, 240, Fit.SECOND_PROBE_LATE),
        (240, 10, 240, Fit.IDLE_EXCEEDS),
        (7200, 75, 350, Fit.IDLE_EXCEEDS),
        (60, 10, None, Fit.UNKNOWN),
    ],
)
def test_judge_table(idle: int, interval: int, timeout: float | None, fit: Fit) -> None:
    """idle + interval < T fits; idle < T <= idle + interval: the second probe is late; idle >= T: too late."""
    assert judge(idle, interval, timeout) is fit


def test_every_policy_below_a_timeout_fits_it() -> None:
    for timeout in (3, 4, 10, 240, 350, 900, 1200, 86400, 432000):
        below = Policy.below(timeout)
        assert judge(below.idle, below.interval, timeout) is Fit.FITS


def test_the_core_model_never_imports_the_checker_or_the_policy() -> None:
    """The model is core: it runs in a process that never loads keepalive.checker, and _policy imports it (not
    the other way round), so there is no import cycle."""
    import ast

    root = Path(keepalive.__file__).parent / "_path"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("keepalive.checker", "keepalive._policy")), (path, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(("keepalive.checker", "keepalive._policy")), (path, alias.name)


# The whole package's import graph (function-level imports included) is checked in tests/test_import_graph.py.
