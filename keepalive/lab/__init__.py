"""A conntrack lab on the real kernel: a Kubernetes node's idle-connection failure, reproduced and fixed.

Linux only, root only (it creates network namespaces). Three namespaces, none linked to the root namespace::

    client ns 192.0.2.2 --veth-- 192.0.2.1 node ns 198.51.100.1 --veth-- 198.51.100.2 and .3 server ns
        node ns: ip_forward=1
                 nftables prerouting: DNAT 203.0.113.10:port -> numgen random mod N backends (kube-proxy)
                 nftables forward:    ct state invalid counter drop (kube-proxy)
                 net.netfilter.nf_conntrack_tcp_timeout_established = conntrack_timeout

Namespace names are unique per run (``ka-<pid>-<hex>-client|node|server``); interfaces inside are eth0/eth1.

API (``from keepalive.lab import Lab``)::

    with Lab(conntrack_timeout=3) as lab:   # builds everything; close() deletes every namespace it made
        lab.vip, lab.client_address, lab.backends   # "203.0.113.10", "192.0.2.2", ("198.51.100.2", ".3")
        lab.namespace("client")                     # the real name, for `ip netns exec`

        # servers: a listening socket per backend address in the server ns, one thread per connection
        server = lab.serve(8080, handler, backends=2)   # handler(conn, backend_address); exposes VIP:8080
        server.errors                                   # exceptions raised by handlers
        lab.expose(6379, backends=1)                    # only the DNAT rule VIP:6379 -> backend(s):6379

        # clients: sockets made while the thread is inside the client ns stay there
        sock = lab.connect(8080, keepalive=None)        # plain socket to VIP:8080, no keepalive
        sock = lab.connect(8080, keepalive=policy)      # keepalive.create_connection(..., policy=policy)
        with lab.inside("client"):                      # setns(2) for this thread only, undone afterwards
            response = client.get(f"http://{lab.vip}:8080/")   # e.g. httpx: the pooled socket is in client ns
        # Only the calling thread moves: code that connects from other threads must run in a subprocess.
        # Clients that connect lazily or reconnect (redis-py, httpx pools) must make every call that may open a
        # socket inside `lab.inside(...)`: from the root namespace the lab's addresses go to the default gateway.

        # processes: `ip netns exec <ns> argv`
        lab.run("node", [sys.executable, "-m", "keepalive", "check", "--json"])   # CompletedProcess[str]
        proc = lab.popen("server", ["redis-server", ...])   # terminated (then killed) at close
        lab.python("client", "print(1)", env={"KEEPALIVE_AUTO": "1"})   # this interpreter, -c code
        lab.command("client", argv)                     # the wrapped argv, for your own subprocess calls

        # the middlebox
        lab.block("server"); lab.unblock("server")      # drop all packets in and out (a dead peer)
        with lab.blocked("server"): ...
        lab.conntrack_stats()     # node's /proc/net/stat/nf_conntrack summed over CPUs
        lab.invalid_dropped()     # packets dropped by `ct state invalid drop`
        lab.sysctl("node", name); lab.sysctl_set("node", {name: value}); lab.nft("node", ruleset)

    missing_requirements() -> list[str]   # why the lab cannot run here ([] when it can)
    cleanup_stale() -> list[str]          # delete namespaces and guard routes left by dead processes (kill -9)

Teardown runs on leaving the ``with`` block (Ctrl-C included), at interpreter exit for a lab never closed,
and on SIGTERM/SIGHUP while a lab is up (turned into SystemExit when their handler was the default).
Ready-made scenarios (used by ``keepalive lab`` and the tests) are in ``keepalive.lab.scenarios``.
"""

from __future__ import annotations

from keepalive.lab._command import LabError
from keepalive.lab._topology import (
    BACKENDS,
    CLIENT_ADDRESS,
    VIP,
    Lab,
    LabServer,
    cleanup_stale,
    lab_namespaces,
    missing_requirements,
    parse_conntrack_stats,
    wait_for_port,
)

__all__ = [
    "BACKENDS",
    "CLIENT_ADDRESS",
    "VIP",
    "Lab",
    "LabError",
    "LabServer",
    "cleanup_stale",
    "lab_namespaces",
    "missing_requirements",
    "parse_conntrack_stats",
    "wait_for_port",
]
