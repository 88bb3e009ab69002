"""The checker's parsers never raise: hypothesis throws text, bytes and structures at them."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from keepalive._path._kubeproxy import parse_kube_proxy
from keepalive._path._middleboxes import parse_middleboxes
from keepalive._path._parse import decode_text, parse_duration, parse_int, parse_nf_stat
from tests.checker_support import NF_HEADER, NODE_SYSCTLS, nf_stat_text

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
config_keys = st.sampled_from(
    [
        "conntrack",
        "Conntrack",
        "linux",
        "mode",
        "ipvs",
        "tcpEstablishedTimeout",
        "TCPEstablishedTimeout",
        "tcpCloseWaitTimeout",
        "tcpBeLiberal",
        "maxPerCore",
        "min",
        "tcpTimeout",
        "kind",
        "data",
        "config.conf",
    ]
)
config_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["24h0m0s", "0s", "1h", "-5m"]),
    lambda children: st.dictionaries(config_keys, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=25,
)


@given(st.text())
def test_parse_int_never_raises(text: str) -> None:
    value, reason = parse_int(text)
    assert (value is None) != (reason is None)


@given(st.integers(min_value=-(10**19), max_value=10**19))
def test_parse_int_reads_every_integer(number: int) -> None:
    assert parse_int(f" {number}\n") == (number, None)


@given(st.binary())
def test_decode_text_never_raises(data: bytes) -> None:
    text, reason = decode_text(data)
    assert (text is None) != (reason is None)


@given(json_values)
def test_parse_duration_never_raises(value: object) -> None:
    seconds, reason = parse_duration(value)
    assert (seconds is None) != (reason is None)


@given(st.text())
def test_parse_duration_text_never_raises(text: str) -> None:
    parse_duration(text)


def test_parse_duration_reads_go_durations() -> None:
    assert parse_duration("24h0m0s") == (86400.0, None)
    assert parse_duration("1h") == (3600.0, None)
    assert parse_duration("1.5m") == (90.0, None)
    assert parse_duration("350s") == (350.0, None)
    assert parse_duration("2h45m30.5s") == (9930.5, None)
    assert parse_duration("300ms") == (0.3, None)
    assert parse_duration("0") == (0.0, None)
    assert parse_duration(0) == (0.0, None)
    assert parse_duration("-1h") == (-3600.0, None)
    for bad in ("", "h", "24", "1d", "1h 2m", "abc", "1.2.3s", "\u0661h", 86400, True, None, [1]):
        assert parse_duration(bad)[0] is None, bad


@given(st.text())
def test_parse_nf_stat_never_raises_on_text(text: str) -> None:
    stat, reason = parse_nf_stat(text)
    assert (stat is None) != (reason is None)
    if stat is not None:
        stat.totals()
        stat.rates(stat, 1.0)


@given(st.lists(st.dictionaries(st.sampled_from(NF_HEADER.split()), st.integers(0, 2**32 - 1)), min_size=1, max_size=8))
def test_parse_nf_stat_sums_cpus(cpus: list[dict[str, int]]) -> None:
    stat, reason = parse_nf_stat(nf_stat_text(cpus, entries=7))
    assert reason is None
    assert stat is not None
    totals = stat.totals()
    assert totals["entries"] == 7
    assert totals["invalid"] == sum(cpu.get("invalid", 0) for cpu in cpus)


@given(st.text(), st.booleans())
@settings(max_examples=200)
def test_parse_kube_proxy_never_raises_on_text(text: str, defaults: bool) -> None:
    proxy, reason = parse_kube_proxy(text, "fuzz", apply_defaults=defaults)
    assert (proxy is None) != (reason is None)


@given(config_like)
@settings(max_examples=300)
def test_parse_kube_proxy_never_raises_on_structures(document: object) -> None:
    text = json.dumps(document)
    proxy, reason = parse_kube_proxy(text, "fuzz")
    assert (proxy is None) != (reason is None)
    if proxy is not None:
        assert proxy.ipvs_timeout is None or proxy.ipvs_timeout > 0


@given(st.text())
def test_parse_middleboxes_never_raises(text: str) -> None:
    known, unknown = parse_middleboxes(text)
    assert not set(known) & set(unknown)


proc_bytes = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: f"{n}\n".encode()),
    st.text(max_size=30).map(str.encode),
)


@given(
    st.dictionaries(st.sampled_from(sorted(NODE_SYSCTLS)), proc_bytes),
    st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
)
@settings(max_examples=60, deadline=None)
def test_check_on_random_proc_trees_never_raises_and_always_renders(sysctls: dict[str, bytes], stat: bytes) -> None:
    """Whatever the files hold, check() returns a report that renders as text, JSON and Prometheus."""
    import shutil
    import tempfile
    from pathlib import Path

    import keepalive
    from tests.checker_support import make_proc

    root = Path(tempfile.mkdtemp(prefix="keepalive-fuzz-"))
    try:
        make_proc(root, dict(sysctls), nf_stat=stat)
        report = keepalive.check(proc_root=root, policy=keepalive.Policy(), sample=0.001)
        assert report.exit_code in {0, 1, 2}
        json.loads(report.to_json())
        assert report.to_text()
        assert report.to_prometheus().endswith("\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
