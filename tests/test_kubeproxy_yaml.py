"""The YAML subset read without PyYAML (a JSON ConfigMap's config.conf, a running kube-proxy's --config file):
it reads what kubeadm and kubectl write exactly as PyYAML does, and refuses (never guesses) anything else."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from keepalive._path._kubeyaml import load_block_yaml

DATA = Path(__file__).parent / "data" / "kube-proxy"


def samples() -> list[tuple[str, str]]:
    """Every YAML document of the samples, and every YAML string a ConfigMap sample holds."""
    found: list[tuple[str, str]] = []
    for path in sorted(DATA.glob("*.yaml")):
        for index, text in enumerate(path.read_text().split("\n---\n")):
            found.append((f"{path.name}#{index}", text))
            doc = yaml.safe_load(text)
            for key, value in ((doc or {}).get("data") or {}).items():
                found.append((f"{path.name}#{index}:{key}", value))
    return found


@pytest.mark.parametrize(("name", "text"), samples(), ids=[name for name, _ in samples()])
def test_kubeadm_and_kubectl_yaml_reads_as_pyyaml_reads_it(name: str, text: str) -> None:
    value, reason = load_block_yaml(text)
    assert reason is None, reason
    assert value == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: null\nb: ~\nc:\nd: ''\n", {"a": None, "b": None, "c": None, "d": ""}),
        ("a: yes\nb: Off\nc: TRUE\nd: 'true'\n", {"a": True, "b": False, "c": True, "d": "true"}),
        (
            "a: 0\nb: 0x1F\nc: 010\nd: -1_000\ne: 1.5\nf: 0s\n",
            {"a": 0, "b": 31, "c": 8, "d": -1000, "e": 1.5, "f": "0s"},
        ),
        ('a: "24h0m0s"  # default\nb: 1h # comment\n', {"a": "24h0m0s", "b": "1h"}),
        ("a: {}\nb: []\n", {"a": {}, "b": []}),
        ("list:\n- 10.0.0.0/8\n- fd00::/8\n", {"list": ["10.0.0.0/8", "fd00::/8"]}),
        ("items:\n  - name: a\n    value: 1\n  - name: b\n", {"items": [{"name": "a", "value": 1}, {"name": "b"}]}),
        ("'quoted key': 'it''s'\n", {"quoted key": "it's"}),
        ("server: https://192.168.122.10:6443\n", {"server": "https://192.168.122.10:6443"}),
        ("a: |\n  text\n  # not a comment\n\n  more\nb: 1\n", {"a": "text\n# not a comment\n\nmore\n", "b": 1}),
        ("a: |-\n    x\n    y\n", {"a": "x\ny"}),
        ("a: |+\n  x\n\n", {"a": "x\n\n"}),
    ],
)
def test_scalars_resolve_as_yaml_1_1(text: str, value: object) -> None:
    assert load_block_yaml(text) == (value, None)
    assert yaml.safe_load(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2]\n",
        "a: {b: 1}\n",
        "a: &anchor 1\nb: *anchor\n",
        "a: !!str 1\n",
        "a: >\n  folded\n",
        "a: 1\n---\nb: 2\n",
        "a: plain\n  continued\n",
        "a:\n\tb: 1\n",
        '"a": "multi\n  line"\n',
        "just a scalar line\nanother\n",
    ],
)
def test_anything_outside_the_subset_is_refused_with_a_reason(text: str) -> None:
    value, reason = load_block_yaml(text)
    assert value is None
    assert reason is not None
    assert "without PyYAML" in reason


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=30),
)
keys = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ_.-/0123456789"), min_size=1, max_size=12)
trees = st.recursive(
    st.dictionaries(keys, scalars, max_size=4),
    lambda children: st.dictionaries(keys, st.one_of(scalars, children, st.lists(scalars, max_size=3)), max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_what_pyyaml_writes_in_block_style_reads_back_the_same_or_is_refused(tree: dict[str, object]) -> None:
    """Never a wrong answer: the subset reads PyYAML's block output back to the same value, or gives a reason."""
    text = yaml.safe_dump(tree, default_flow_style=False, width=math.inf)  # type: ignore[arg-type]
    expected = yaml.safe_load(text)
    value, reason = load_block_yaml(text)
    if reason is None:
        assert value == expected
    else:
        assert value is None


def test_json_configmap_reads_without_pyyaml() -> None:
    """kubectl -o json of kubeadm's ConfigMap with no PyYAML installed: read, neither the hint nor "not found"."""
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "from keepalive._path._kubeproxy import read_kube_proxy_file\n"
        f"proxy, reason = read_kube_proxy_file({str(DATA / 'kubeadm-configmap.json')!r})\n"
        "print(reason)\n"
        "print(proxy.tcp_established_timeout, proxy.max_per_core, proxy.min, proxy.tcp_be_liberal, proxy.mode)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["None", "86400.0 32768 131072 False None"]


def test_json_configmap_outside_the_subset_without_pyyaml_gives_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from keepalive._path._kubeproxy import parse_kube_proxy

    monkeypatch.setitem(sys.modules, "yaml", None)
    inner = "kind: KubeProxyConfiguration\nconntrack: {tcpEstablishedTimeout: 1h}\n"
    proxy, reason = parse_kube_proxy(json.dumps({"kind": "ConfigMap", "data": {"config.conf": inner}}), "cm")
    assert proxy is None
    assert reason is not None
    assert "pip install 'tcp-keepalive[yaml]'" in reason
