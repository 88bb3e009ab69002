"""The conntrack lab on the real kernel: idle connections through a kube-proxy-like node fail without keepalive
and survive with it. Each scenario idles for at least twice the node's conntrack timeout and asserts both sides.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from keepalive import Policy
from keepalive.lab import Lab, cleanup_stale, lab_namespaces, parse_conntrack_stats, scenarios
from keepalive.lab._guard import GUARD_PROTO
from keepalive.lab._topology import HOST_GUARD_ADDRESSES
from tests.helpers import require_lab

CONNTRACK_TIMEOUT = 3
IDLE_FOR = 2 * CONNTRACK_TIMEOUT + 1
#: below the conntrack timeout, as a user of Policy.below() would get it
POLICY = Policy.below(CONNTRACK_TIMEOUT)
#: connections per side in the re-balance test: each fails without keepalive with probability about 1/2
REBALANCED_CONNECTIONS = 16
#: extra seconds allowed for dead-peer detection beyond the policy's bound (timer granularity, thread wake-up)
SLACK = 2.0

STATS = """\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error
0000000c  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
0000000c  00000000 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000000
"""


def test_conntrack_stats_are_parsed_by_header_and_summed_over_cpus() -> None:
    stats = parse_conntrack_stats(STATS)
    assert stats["invalid"] == 13
    assert stats["insert_failed"] == 2
    assert stats["drop"] == 1
    assert stats["entries"] == 12  # a global count repeated per CPU, not summed


def test_lab_cli_refuses_clearly_when_not_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from keepalive._cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err
    assert "sudo keepalive lab" in err


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(conntrack_timeout=CONNTRACK_TIMEOUT) as lab:
        yield lab


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f}s"


def _report(label: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n[lab] {label}: {text}", flush=True)


@pytest.mark.lab
def test_topology_is_isolated_from_the_root_namespace(lab: Lab) -> None:
    """Only lo and the lab's veths exist inside, each veth's peer is in a lab namespace, and the node's
    short conntrack timeout does not leak into the root namespace."""
    names = set(lab.namespaces.values())
    for role in lab.namespaces:
        links = json.loads(lab.run(role, ["ip", "-j", "-d", "link", "show"]).stdout)
        for link in links:
            if link["ifname"] == "lo":
                continue
            assert link["linkinfo"]["info_kind"] == "veth", (role, link)
            peer_ns = link.get("link_netnsid")
            assert peer_ns is not None, f"{role}: {link['ifname']} has its peer in the same namespace"
        ids = json.loads(lab.run(role, ["ip", "-j", "netns", "list-id"]).stdout)
        peers = {entry.get("name") for entry in ids}
        assert peers <= names, f"{role} has a peer outside the lab: {peers - names}"
    assert lab.sysctl("node", "net.netfilter.nf_conntrack_tcp_timeout_established") == str(CONNTRACK_TIMEOUT)
    assert lab.sysctl("node", "net.ipv4.ip_forward") == "1"
    with open("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established") as f:
        assert int(f.read()) != CONNTRACK_TIMEOUT
    assert names <= set(lab_namespaces())


@pytest.mark.lab
def test_lab_addresses_are_unreachable_from_the_root_namespace(lab: Lab) -> None:
    """A client that forgets lab.inside() must fail on this machine, not send lab traffic out of the host."""
    import socket

    for address in (lab.vip, lab.backends[0], lab.client_address):
        with socket.socket() as sock:
            sock.settimeout(2)
            with pytest.raises(OSError) as info:
                sock.connect((address, 9))
            assert not isinstance(info.value, TimeoutError), f"{address}: the packet left the machine"
    routes = subprocess.run(
        ["ip", "-j", "route", "show", "type", "blackhole", "proto", GUARD_PROTO, "metric", str(os.getpid())],
        check=True,
        capture_output=True,
        text=True,
    )
    guarded = {route["dst"] for route in json.loads(routes.stdout)}
    # Exactly the routes this lab says it added (none when something else blackholes the addresses already).
    assert guarded == set(lab._guarded) <= set(HOST_GUARD_ADDRESSES), routes.stdout


@pytest.mark.lab
def test_guard_routes_go_when_the_last_lab_of_the_process_closes() -> None:
    """Labs of one process share the guard routes: they stay while one is up and go with the last one."""
    require_lab()

    def ours() -> str:
        argv = ["ip", "route", "show", "type", "blackhole", "proto", GUARD_PROTO, "metric", str(os.getpid())]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    before = ours()  # another lab of this process (the module's fixture) may hold them already
    with Lab(conntrack_timeout=CONNTRACK_TIMEOUT):
        with Lab(conntrack_timeout=CONNTRACK_TIMEOUT):
            held = ours()
        assert ours() == held
    assert ours() == before


@pytest.mark.lab
@pytest.mark.slow
def test_server_push_after_idle_is_lost_without_keepalive_and_arrives_with_it(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """A watch event / DB notification sent after the conntrack entry expired never reaches a plain client (the
    server is reset); on a connection made with keepalive.create_connection(policy=...) it arrives."""
    before = lab.conntrack_stats()
    without, with_ = scenarios.server_push(lab, [None, POLICY], idle_for=IDLE_FOR)
    invalid = lab.conntrack_stats()["invalid"] - before["invalid"]
    _report("push without keepalive", f"received={without.received} server: {without.server_error}", capsys)
    _report(
        f"push with {POLICY}",
        f"received {(with_.latency or 0) * 1000:.2f} ms after the push; conntrack invalid +{invalid}",
        capsys,
    )

    assert not without.received
    assert without.server_error is not None
    assert "ConnectionResetError" in without.server_error

    assert with_.received, with_.client_error
    assert with_.server_acknowledged, with_.server_error


@pytest.mark.lab
@pytest.mark.slow
def test_request_after_idle_is_rebalanced_and_reset_without_keepalive_and_stays_with_it(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two backends behind the VIP: after the idle a plain connection's next request is DNATed afresh, and when
    it lands on the other backend it is reset; keepalive connections keep their backend."""
    n = REBALANCED_CONNECTIONS
    outcomes = scenarios.request_after_idle(lab, [None] * n + [POLICY] * n, idle_for=IDLE_FOR)
    without, with_ = outcomes[:n], outcomes[n:]
    reset = [outcome for outcome in without if outcome.error is not None]
    _report("re-balance without keepalive", f"{len(reset)}/{n} reset: {sorted({o.error for o in reset})}", capsys)
    _report(f"re-balance with {POLICY}", f"{sum(o.stayed for o in with_)}/{n} stayed", capsys)

    assert {outcome.first_backend for outcome in outcomes} == set(lab.backends)  # both backends really used
    assert reset, "no plain connection was re-balanced: the lab did not reproduce the failure"
    assert all("ConnectionResetError" in (outcome.error or "") for outcome in reset)
    assert [outcome.error for outcome in with_] == [None] * n
    assert all(outcome.stayed for outcome in with_)


@pytest.mark.lab
@pytest.mark.slow
def test_dead_peer_is_detected_within_the_keepalive_bound_and_user_timeout(
    lab: Lab, capsys: pytest.CaptureFixture[str], record_property: pytest.RecordProperty
) -> None:
    """The server namespace drops everything: with the policy a blocked read fails within
    idle + interval * count (+ slack), a read behind unacknowledged data within TCP_USER_TIMEOUT (+ slack);
    without keepalive both are still blocked well after that."""
    policy = Policy(idle=2, interval=1, count=3)
    bound = policy.idle + policy.interval * policy.count
    assert policy.user_timeout is not None
    give_up = max(bound, policy.user_timeout) + SLACK + 1
    idle_ka, sending_ka, idle_plain, sending_plain = scenarios.dead_peer(
        lab, [(policy, False), (policy, True), (None, False), (None, True)], give_up=give_up
    )
    record_property("dead_peer_read_seconds", idle_ka.detected_after)
    record_property("dead_peer_send_seconds", sending_ka.detected_after)
    _report(
        f"dead peer, blocked read, {policy}",
        f"failed after {_seconds(idle_ka.detected_after)} ({idle_ka.error})",
        capsys,
    )
    _report(
        "dead peer, unacked send", f"failed after {_seconds(sending_ka.detected_after)} ({sending_ka.error})", capsys
    )
    _report("dead peer without keepalive", f"still blocked after {give_up}s", capsys)

    assert idle_ka.detected_after is not None, "the dead peer went unnoticed with keepalive"
    assert idle_ka.detected_after <= bound + SLACK
    assert idle_ka.error is not None
    assert "Errno 110" in idle_ka.error  # ETIMEDOUT from the kernel
    assert sending_ka.detected_after is not None, "the unacknowledged send went unnoticed with TCP_USER_TIMEOUT"
    assert sending_ka.detected_after <= policy.user_timeout + SLACK
    assert idle_plain.detected_after is None
    assert sending_plain.detected_after is None


@pytest.mark.lab
@pytest.mark.slow
def test_keepalive_lab_demo_shows_failure_and_fix_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    """`keepalive lab --json` builds its own topology, shows both sides, reports counters, deletes everything."""
    require_lab()
    done = subprocess.run(
        [sys.executable, "-m", "keepalive", "lab", "--conntrack-timeout", str(CONNTRACK_TIMEOUT), "--idle-for",
         str(IDLE_FOR), "--connections", "4", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    _report("keepalive lab", f"{report['seconds']}s, conntrack invalid {report['conntrack_invalid']}", capsys)
    assert report["shown"] is True
    assert report["push"][0]["received"] is False
    assert report["push"][1]["received"] is True
    assert isinstance(report["conntrack_invalid"], int)
    assert not any(name.startswith(report["lab"]) for name in lab_namespaces())


@pytest.mark.lab
def test_lab_is_torn_down_on_sigterm() -> None:
    """A process killed with SIGTERM while its lab is up still deletes every namespace it created."""
    require_lab()
    code = (
        "import time\nfrom keepalive.lab import Lab\n"
        "lab = Lab(conntrack_timeout=3).start()\nprint(lab.run_id, flush=True)\ntime.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            run_id = process.stdout.readline().strip()
            assert run_id
            assert any(name.startswith(run_id) for name in lab_namespaces())
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 128 + signal.SIGTERM
        finally:
            if process.poll() is None:
                process.kill()
    assert not any(name.startswith(run_id) for name in lab_namespaces())


@pytest.mark.lab
def test_lab_is_torn_down_when_the_block_raises() -> None:
    require_lab()
    lab = Lab(conntrack_timeout=3)
    run_id = lab.run_id

    def fail_inside() -> None:
        with lab:
            assert len([name for name in lab_namespaces() if name.startswith(run_id)]) == 3
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert not any(name.startswith(run_id) for name in lab_namespaces())
    assert lab.closed


@pytest.mark.lab
def test_thread_returns_to_its_own_namespace_after_inside(lab: Lab) -> None:
    own = os.readlink("/proc/thread-self/ns/net")
    with lab.inside("client"):
        assert os.readlink("/proc/thread-self/ns/net") != own
    assert os.readlink("/proc/thread-self/ns/net") == own
    with pytest.raises(RuntimeError), lab.inside("server"):
        raise RuntimeError
    assert os.readlink("/proc/thread-self/ns/net") == own


@pytest.mark.lab
def test_cleanup_stale_deletes_namespaces_of_a_killed_process() -> None:
    """SIGKILL leaves no chance to clean up: `keepalive lab --cleanup` / cleanup_stale() removes what is left,
    and only what belongs to processes that are gone."""
    require_lab()
    code = "import time\nfrom keepalive.lab import Lab\nprint(Lab().start().run_id, flush=True)\ntime.sleep(60)\n"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        run_id = process.stdout.readline().strip()
        assert run_id
        assert not any(name.startswith(run_id) for name in cleanup_stale())
        assert any(name.startswith(run_id) for name in lab_namespaces())  # its owner is alive: kept
        process.kill()
        process.wait()
    deleted = cleanup_stale()
    assert sorted(name for name in deleted if name.startswith(run_id)) == sorted(
        f"{run_id}-{role}" for role in ("client", "node", "server")
    )
    assert not any(name.startswith(run_id) for name in lab_namespaces())
