"""The lab's host guard routes on a real routing table: a throwaway network namespace stands in for a router host
(IS-IS routes, our marker on foreign routes), and the lab's own code runs inside it. The host's routing table is
never touched by these tests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from keepalive.lab._guard import GUARD_PROTO
from keepalive.lab._topology import BACKENDS, HOST_GUARD_ADDRESSES, NODE_SERVER_SIDE, VIP
from tests.helpers import require_lab

pytestmark = pytest.mark.lab

ISIS = "187"
GATEWAY = "10.231.0.2"


def _ip(namespace: str, *argv: str) -> str:
    return subprocess.run(["ip", "-n", namespace, *argv], check=True, capture_output=True, text=True).stdout


def _routes(namespace: str) -> set[tuple[str, str, str, int]]:
    """(type, destination, protocol, metric) of every route of the namespace's main table."""
    found = set()
    for route in json.loads(_ip(namespace, "-j", "route", "show", "table", "main") or "[]"):
        found.add((route.get("type", "unicast"), route["dst"], str(route.get("protocol", "")), route.get("metric", 0)))
    return found


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def router_namespace() -> Iterator[str]:
    """A namespace with a default route through a gateway, like a host whose lab addresses would leave it, plus
    routes that are not the lab's: IS-IS routes (proto 187, the old lab's marker) to lab addresses, and routes
    that carry the lab's marker but are not provably its guards."""
    require_lab()
    name = f"ka-routes-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            "link add gw0 type veth peer name gw1",
            "link set gw1 up",
            "link set gw0 up",
            "link set lo up",
            "addr add 10.231.0.1/24 dev gw0",
            f"route add default via {GATEWAY}",
            # a router's IS-IS routes to addresses the lab uses, in both shapes the old lab would have flushed
            f"route add {VIP}/32 via {GATEWAY} proto {ISIS}",
            f"route add blackhole {BACKENDS[0]}/32 proto {ISIS}",
            f"route add 203.0.113.0/24 via {GATEWAY} proto {ISIS}",
            # the lab's marker, but not a lab guard: a foreign destination, a non-blackhole, no pid in the metric
            f"route add 10.77.0.0/16 via {GATEWAY} proto {GUARD_PROTO} metric {_dead_pid()}",
            f"route add {BACKENDS[1]}/32 via {GATEWAY} proto {GUARD_PROTO} metric {_dead_pid()}",
            f"route add blackhole {NODE_SERVER_SIDE}/32 proto {GUARD_PROTO}",
        ):
            _ip(name, *command.split())
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _inside(namespace: str, code: str) -> str:
    """Run Python code with keepalive in the namespace (``ip netns exec``: the whole process is inside)."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_guard_routes_are_added_and_deleted_exactly_and_foreign_routes_survive(router_namespace: str) -> None:
    """A lab guards the addresses the namespace would route through its gateway, with blackhole routes marked by
    GUARD_PROTO and its pid, and on teardown deletes exactly those: IS-IS routes to the same addresses and routes
    that merely carry the marker are all still there afterwards."""
    before = _routes(router_namespace)
    out = _inside(
        router_namespace,
        """
        import json, os
        from keepalive.lab import _guard as g
        from keepalive.lab._topology import HOST_GUARD_ADDRESSES as lab
        added = g.add_host_guards(lab)
        during = g._guard_routes(lab)
        g.remove_host_guards(added)
        print(json.dumps({"pid": os.getpid(), "added": added, "during": during, "after": g._guard_routes(lab)}))
        """,
    )
    result = json.loads(out)
    pid = result["pid"]
    # VIP and the second backend go through the gateway: guarded. The first backend and the node's server side
    # are blackholed already by routes that are not the lab's: left alone.
    assert sorted(result["added"]) == sorted({VIP, BACKENDS[1]})
    assert set(HOST_GUARD_ADDRESSES) == {VIP, BACKENDS[0], BACKENDS[1], NODE_SERVER_SIDE}
    assert sorted(map(tuple, result["during"])) == sorted((address, pid) for address in result["added"])
    assert result["after"] == []
    assert _routes(router_namespace) == before


def test_cleanup_deletes_only_guards_of_dead_lab_processes(router_namespace: str) -> None:
    """`keepalive lab --cleanup` deletes a guard left by a killed lab (blackhole, lab address, GUARD_PROTO, the
    dead pid as metric) and nothing else: not IS-IS routes, not marked routes that are not lab guards, not the
    guard of a lab process that is still alive."""
    dead = _dead_pid()
    alive = os.getpid()
    _ip(router_namespace, "route", "add", "blackhole", f"{VIP}/32", "proto", GUARD_PROTO, "metric", str(dead))
    _ip(router_namespace, "route", "add", "blackhole", f"{BACKENDS[1]}/32", "proto", GUARD_PROTO, "metric", str(alive))
    before = _routes(router_namespace)
    out = _inside(router_namespace, "from keepalive._cli import main\nraise SystemExit(main(['lab', '--cleanup']))\n")
    assert f"route {VIP}/32 (pid {dead})" in out
    assert _routes(router_namespace) == before - {("blackhole", VIP, GUARD_PROTO, dead)}
    assert any(route[1] == f"{VIP}" and route[2] in (ISIS, "isis") for route in _routes(router_namespace))
