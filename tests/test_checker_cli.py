"""`keepalive check` as a user runs it: a real subprocess, exit codes, formats, --textfile, --every, bad flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.checker_support import make_proc, nf_stat_text
from tests.helpers import environ_without_keepalive

ROOT = Path(__file__).resolve().parents[1]


def run_check(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = environ_without_keepalive()
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "keepalive", "check", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_healthy_node_exits_0(tmp_path: Path) -> None:
    result = run_check("--proc-root", make_proc(tmp_path), "--policy", "60,10,5")
    assert result.returncode == 0, result.stderr
    assert "Path timeout: 86400 s" in result.stdout
    assert "KEEPALIVE_IDLE=60" in result.stdout
    assert result.stderr == ""


def test_warnings_exit_1_and_errors_exit_2(tmp_path: Path) -> None:
    proc = make_proc(tmp_path)
    warned = run_check("--proc-root", proc, "--policy", "60,10,5", "--middlebox", "aws-nat-gateway")
    assert warned.returncode == 1  # the kernel's tcp_keepalive_time 7200 >= 350
    assert "kernel-keepalive-exceeds-path-timeout" in warned.stdout
    failed = run_check("--proc-root", proc, "--policy", "400,10,5", "--middlebox", "aws-nat-gateway")
    assert failed.returncode == 2
    assert "policy-idle-exceeds-path-timeout" in failed.stdout


def test_policy_from_the_environment_is_checked(tmp_path: Path) -> None:
    result = run_check(
        "--proc-root", make_proc(tmp_path), "--path-timeout", "350", "--json", env={"KEEPALIVE_IDLE": "400"}
    )
    data = json.loads(result.stdout)
    assert data["policy"]["idle"] == 400
    assert result.returncode == 2


def test_json_output_has_the_issue_fields(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, nf_stat=nf_stat_text([{"invalid": 2}]))
    result = run_check("--proc-root", proc, "--middlebox", "azure-lb,gcp-cloud-nat", "--policy", "60,10,5", "--json")
    data = json.loads(result.stdout)
    assert data["path_timeout"] == 240
    assert data["recommended_policy"] == {**data["recommended_policy"], "idle": 158, "interval": 22, "count": 5}
    assert data["recommended_policy"]["user_timeout"] == 268
    codes = {f["code"]: f["severity"] for f in data["findings"]}
    assert codes["conntrack-invalid-packets"] == "warning"
    assert all(set(f) >= {"severity", "code", "message", "fix"} for f in data["findings"])
    names = {s["name"] for s in data["sources"]}
    assert {"middlebox azure-lb", "middlebox gcp-cloud-nat", "net.ipv4.tcp_keepalive_time"} <= names
    assert result.returncode == data["exit_code"] == 1


def test_prometheus_format_and_textfile(tmp_path: Path) -> None:
    proc = make_proc(tmp_path / "proc")
    textfile = tmp_path / "collector" / "keepalive.prom"
    textfile.parent.mkdir()
    result = run_check("--proc-root", proc, "--format", "prometheus", "--textfile", textfile, "--policy", "60,10,5")
    assert result.returncode == 0
    assert "keepalive_check_status 0" in result.stdout
    written = textfile.read_text()
    assert "keepalive_check_path_timeout_seconds 86400" in written
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["keepalive.prom"]  # no temporary file left
    assert oct(textfile.stat().st_mode & 0o777) == "0o644"


def test_textfile_in_a_missing_directory_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_check("--proc-root", make_proc(tmp_path), "--textfile", tmp_path / "nope" / "x.prom")
    assert result.returncode == 2
    assert "cannot write --textfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_repeats_logs_each_round_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = make_proc(tmp_path / "proc")
    textfile = tmp_path / "keepalive.prom"
    environment = environ_without_keepalive()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keepalive",
            "check",
            "--proc-root",
            str(proc),
            "--every",
            "0.2",
            "--textfile",
            str(textfile),
            "--format",
            "prometheus",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not textfile.exists():
            time.sleep(0.05)
        first = textfile.read_text()
        # a changed value shows up in the next round: the file is rewritten every round
        (proc / "sys/net/netfilter/nf_conntrack_tcp_timeout_established").write_text("7200\n")
        while time.monotonic() < deadline and "keepalive_check_path_timeout_seconds 7200" not in textfile.read_text():
            time.sleep(0.05)
        assert "keepalive_check_path_timeout_seconds 86400" in first
        assert "keepalive_check_path_timeout_seconds 7200" in textfile.read_text()
    finally:
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    assert stderr.count("keepalive check round: status") >= 2
    assert "stopped after" in stderr
    assert stdout.count("# TYPE keepalive_check_status gauge") >= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kube-proxy-url", "http://10.1.2.3:10249/configz"], "loopback"),
        (["--middlebox", "aws-nat-gatewya"], "unknown middlebox 'aws-nat-gatewya'"),
        (["--policy", "0,10,5"], "idle"),
        (["--path-timeout", "soon"], "seconds"),
        (["--sample", "-1"], "positive"),
        (["--json", "--format", "prometheus"], "conflicts"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_check("--proc-root", make_proc(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_list_middleboxes(tmp_path: Path) -> None:
    result = run_check("--list-middleboxes")
    assert result.returncode == 0
    assert "aws-nat-gateway" in result.stdout
    assert "350 s" in result.stdout


def test_garbage_proc_tree_never_prints_a_traceback(tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": b"\xff\x00", "net.ipv4.tcp_keepalive_time": b"x" * 9000},
        nf_stat=b"garbage\n\x01",
    )
    for fmt in ("text", "json", "prometheus"):
        result = run_check("--proc-root", proc, "--format", fmt, "--sample", "0.01")
        assert result.returncode in {0, 1}, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_fresh_virtualenv_pip_install_then_keepalive_check(tmp_path: Path) -> None:
    """The machine's main job: `pip install .` in a fresh virtualenv (standard library only), `keepalive check`."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)]
    try:
        import hatchling  # noqa: F401

        build.insert(4, "--no-build-isolation")  # no index needed when the build backend is here
    except ImportError:
        pass
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    wheel = next(wheels.glob("tcp_keepalive-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", str(wheel)], check=True, timeout=600)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KEEPALIVE_", "PYTHON"))}
    result = subprocess.run(
        [target / "bin" / "keepalive", "check", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode in {0, 1, 2}, result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert {"findings", "recommended_policy", "path_timeout", "sources"} <= set(data)
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    assert {p["name"].lower() for p in json.loads(listed)} <= {"pip", "setuptools", "tcp-keepalive"}


def test_every_with_json_prints_one_object_per_line(tmp_path: Path) -> None:
    environment = environ_without_keepalive()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keepalive",
            "check",
            "--proc-root",
            str(make_proc(tmp_path)),
            "--every",
            "0.1",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    assert child.stdout is not None
    lines = [child.stdout.readline(), child.stdout.readline()]
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    assert child.returncode == 0
    for line in lines:
        assert json.loads(line)["path_timeout"] == 86400


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_proc_root_that_is_not_a_proc_tree_exits_2_naming_it(tmp_path: Path, make: str) -> None:
    """Issue 14: an unmounted hostPath (an empty directory) or nothing at all passed with exit 0."""
    root = tmp_path / "host-proc"
    if make == "empty":
        root.mkdir()
    result = run_check("--proc-root", root, "--policy", "60,10,5")
    assert result.returncode == 2
    assert str(root) in result.stderr
    assert "nothing on this host expires" not in result.stdout


def test_a_proc_root_env_that_is_not_a_proc_tree_exits_2_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "host-proc"
    root.mkdir()
    result = run_check("--policy", "60,10,5", env={"KEEPALIVE_PROC_ROOT": str(root)})
    assert result.returncode == 2
    assert "proc-root-invalid" in result.stdout
    assert str(root) in result.stdout


def test_an_empty_kube_proxy_config_is_a_usage_error(tmp_path: Path) -> None:
    result = run_check("--proc-root", make_proc(tmp_path), "--kube-proxy-config", "")
    assert result.returncode == 2
    assert "--kube-proxy-config" in result.stderr
    assert "empty path" in result.stderr
