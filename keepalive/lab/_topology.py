"""The lab topology: client ns --veth-- node ns (DNAT + conntrack) --veth-- server ns."""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from keepalive._path._parse import parse_nf_stat
from keepalive.lab import _netns
from keepalive.lab._command import LabError
from keepalive.lab._command import run as _run
from keepalive.lab._guard import add_host_guards, remove_host_guards, remove_stale_host_guards

if TYPE_CHECKING:
    from keepalive import Policy

Role = Literal["client", "node", "server"]
ROLES: tuple[Role, ...] = ("client", "node", "server")

VIP = "203.0.113.10"
CLIENT_ADDRESS = "192.0.2.2"
NODE_CLIENT_SIDE = "192.0.2.1"
NODE_SERVER_SIDE = "198.51.100.1"
BACKENDS = ("198.51.100.2", "198.51.100.3")

NAT_TABLE = "keepalive_lab"
BLACKHOLE_TABLE = "keepalive_lab_blackhole"
NAME_PREFIX = "ka"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}-(\d+)-[0-9a-f]+-(client|node|server)$")

_NODE_RULESET = f"""\
table ip {NAT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ct state invalid counter drop comment "kube-proxy: drop INVALID"
    }}
}}
"""

_BLACKHOLE_RULESET = f"""\
table inet {BLACKHOLE_TABLE} {{
    chain input {{ type filter hook input priority raw; policy drop; }}
    chain output {{ type filter hook output priority raw; policy drop; }}
}}
"""


def missing_requirements() -> list[str]:
    """Why the lab cannot run here (empty list when it can): not Linux, not root, no `ip`/`nft`."""
    reasons: list[str] = []
    if not sys.platform.startswith("linux"):
        reasons.append(f"the lab needs Linux network namespaces (platform is {sys.platform})")
        return reasons
    if os.geteuid() != 0:
        reasons.append("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            reasons.append(f"`{tool}` not found (Debian package {package})")
    return reasons


#: The lab addresses clients connect to: routed to a blackhole (/32 each) in the root namespace while a lab is up
#: (keepalive.lab._guard).
HOST_GUARD_ADDRESSES: Final = (VIP, NODE_SERVER_SIDE, *BACKENDS)


def parse_conntrack_stats(text: str) -> dict[str, int]:
    """Sum /proc/net/stat/nf_conntrack over CPUs with the core's parser (columns are matched by header).

    ``entries`` is a global count repeated on every row, so it is taken once rather than summed.

    Raises:
        LabError: the text is not in that format; the message says why.
    """
    parsed, error = parse_nf_stat(text)
    if parsed is None:
        raise LabError(f"/proc/net/stat/nf_conntrack: {error}")
    return parsed.totals()


def lab_namespaces() -> list[str]:
    """Names of lab namespaces present on this machine (`ka-<pid>-<hex>-<role>`), from any process."""
    try:
        names = os.listdir(_netns.NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if _NAME_RE.match(name))


def cleanup_stale() -> list[str]:
    """Delete lab namespaces and guard routes whose creating process is gone (after `kill -9`).

    Returns the namespace names deleted, then one ``route <address>/32 (pid <pid>)`` entry per guard route deleted.
    A route is deleted only when it is provably a lab guard (see :data:`GUARD_PROTO`) of a process that is gone.
    """
    deleted: list[str] = []
    for name in lab_namespaces():
        match = _NAME_RE.match(name)
        assert match is not None
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        else:
            continue
        try:
            _run(["ip", "netns", "del", name])
        except LabError:
            continue
        deleted.append(name)
    deleted.extend(f"route {address}/32 (pid {pid})" for address, pid in remove_stale_host_guards(HOST_GUARD_ADDRESSES))
    return deleted


_LIVE: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _close_live_labs() -> None:
    for lab in list(_LIVE):
        lab.close()


Handler = Callable[[socket.socket, str], object]


class LabServer:
    """Listening sockets in the server namespace, one per backend address, each with an accept thread.

    Every accepted connection runs `handler(conn, backend_address)` in its own daemon thread; the connection
    is closed when the handler returns. Exceptions raised by handlers are kept in `errors` (assert it empty).
    """

    def __init__(self, lab: Lab, port: int, handler: Handler, addresses: Sequence[str]) -> None:
        self.port = port
        self.addresses = tuple(addresses)
        self.errors: list[BaseException] = []
        self._handler = handler
        self._stop = threading.Event()
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        with lab.inside("server"):
            for address in self.addresses:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, port))
                listener.listen(64)
                listener.settimeout(0.2)
                self._listeners.append(listener)
        for listener, address in zip(self._listeners, self.addresses, strict=True):
            thread = threading.Thread(
                target=self._accept_loop,
                args=(listener, address),
                name=f"lab-accept-{address}:{port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _accept_loop(self, listener: socket.socket, address: str) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(
                target=self._handle, args=(conn, address), name=f"lab-conn-{address}:{self.port}", daemon=True
            ).start()

    def _handle(self, conn: socket.socket, address: str) -> None:
        with conn:
            try:
                self._handler(conn, address)
            except BaseException as exc:  # reported through .errors
                self.errors.append(exc)

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (connections in handlers finish on their own)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        for listener in self._listeners:
            listener.close()


class Lab:
    """Three network namespaces like a Kubernetes node; see the package docstring for the whole API."""

    def __init__(self, *, conntrack_timeout: int = 3, handle_signals: bool = True) -> None:
        if conntrack_timeout < 1:
            raise ValueError("conntrack_timeout must be at least 1 second")
        self.conntrack_timeout = conntrack_timeout
        self.vip = VIP
        self.client_address = CLIENT_ADDRESS
        self.backends = BACKENDS
        self.run_id = f"{NAME_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.namespaces: dict[Role, str] = {role: f"{self.run_id}-{role}" for role in ROLES}
        self._handle_signals = handle_signals
        self._created: list[str] = []
        self._exposed: dict[int, tuple[str, ...]] = {}
        self._servers: list[LabServer] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._sockets: list[socket.socket] = []
        self._previous_handlers: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._guarded: list[str] = []
        self.started = False
        self.closed = False

    # -- lifetime --------------------------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> Lab:
        """Create namespaces, links, addresses, routes, nftables rules, sysctls; clean up if a step fails."""
        if self.started:
            return self
        problems = missing_requirements()
        if problems:
            raise LabError("; ".join(problems))
        self.started = True
        _LIVE.add(self)
        self._install_signal_handlers()
        try:
            self._guard_host()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        client, node, server = (self.namespaces[role] for role in ROLES)
        for name in (client, node, server):
            _run(["ip", "netns", "add", name])
            self._created.append(name)
        # veth pairs are created directly inside their namespaces: nothing ever appears in the root namespace.
        for inner, outer, peer in (("eth0", client, "eth0"), ("eth0", server, "eth1")):
            _run(
                [
                    "ip",
                    "link",
                    "add",
                    "name",
                    inner,
                    "netns",
                    outer,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                    "netns",
                    node,
                ]
            )
        self._ip_batch(
            client,
            [f"addr add {CLIENT_ADDRESS}/24 dev eth0", "link set lo up", "link set eth0 up",
             f"route add default via {NODE_CLIENT_SIDE}"],
        )  # fmt: skip
        self._ip_batch(
            node,
            [f"addr add {NODE_CLIENT_SIDE}/24 dev eth0", f"addr add {NODE_SERVER_SIDE}/24 dev eth1",
             "link set lo up", "link set eth0 up", "link set eth1 up",
             # A real node routes a service IP somewhere (its default route): packets to the VIP that conntrack
             # could not translate (INVALID, e.g. a FIN after the entry expired) then reach the forward chain,
             # where kube-proxy's rule drops them, instead of dying in routing with an ICMP error.
             f"route add {VIP}/32 via {BACKENDS[0]}"],
        )  # fmt: skip
        self._ip_batch(
            server,
            [*(f"addr add {address}/24 dev eth0" for address in BACKENDS), "link set lo up", "link set eth0 up",
             f"route add default via {NODE_SERVER_SIDE}"],
        )  # fmt: skip
        self.sysctl_set("node", {"net.ipv4.ip_forward": "1"})
        # The nat table registers conntrack in the node namespace; its per-namespace timeouts apply from then.
        self.nft("node", _NODE_RULESET)
        self.sysctl_set("node", {"net.netfilter.nf_conntrack_tcp_timeout_established": str(self.conntrack_timeout)})
        actual = self.sysctl("node", "net.netfilter.nf_conntrack_tcp_timeout_established")
        if actual != str(self.conntrack_timeout):
            raise LabError(f"node namespace kept nf_conntrack_tcp_timeout_established={actual}")

    def _guard_host(self) -> None:
        """Blackhole the lab's destination addresses (one /32 each) in the root namespace while a lab is up.

        A client that connects from the wrong namespace (a lazy client whose first command runs outside
        ``lab.inside()``) would otherwise send lab traffic out through the host's default gateway. With these
        routes it fails at once with "Invalid argument" and nothing leaves the machine. Only single addresses
        that the host reaches through a gateway are guarded: the host's own networks are never touched, and
        other hosts in the same documentation ranges (some sandboxes route their package mirrors through
        203.0.113.0/24) stay reachable. The lab remembers exactly which routes it added and deletes only those.
        """
        self._guarded = add_host_guards(HOST_GUARD_ADDRESSES)

    def _unguard_host(self) -> None:
        """Delete exactly the guard routes this lab added (shared with other labs of this process: the last one)."""
        guarded, self._guarded = self._guarded, []
        remove_host_guards(guarded)

    def _ip_batch(self, name: str, commands: Sequence[str]) -> None:
        _run(["ip", "-n", name, "-batch", "-"], stdin="\n".join(commands) + "\n")

    def close(self) -> None:
        """Stop servers and processes, close sockets, delete every namespace made. Idempotent; never raises."""
        with self._lock:
            if self.closed or not self.started:
                self.closed = True
                return
            self.closed = True
        for server in self._servers:
            try:
                server.stop()
            except Exception:  # teardown goes on
                pass
        for process in self._processes:
            _stop_process(process)
        for sock in self._sockets:
            sock.close()
        failures = []
        for name in reversed(self._created):
            try:
                _run(["ip", "netns", "del", name])
            except LabError as exc:
                failures.append(str(exc))
        self._created.clear()
        self._unguard_host()
        self._restore_signal_handlers()
        _LIVE.discard(self)
        if failures:
            print("keepalive lab: teardown left namespaces behind: " + "; ".join(failures), file=sys.stderr)

    def _install_signal_handlers(self) -> None:
        # Ctrl-C raises KeyboardInterrupt, which the `with` block already handles. SIGTERM and SIGHUP would end
        # the process without running `finally` or atexit: turn them into SystemExit while the lab is up.
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                self._previous_handlers[signum] = signal.signal(signum, _exit_on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # -- running things inside -------------------------------------------------------------------------------
    def namespace(self, role: Role) -> str:
        """The real namespace name for `role` ("client", "node" or "server"), usable with `ip netns exec`."""
        return self.namespaces[role]

    @contextmanager
    def inside(self, role: Role) -> Iterator[None]:
        """Run the block with the calling thread in `role`'s namespace; sockets made there stay there."""
        self._require_started()
        with _netns.entered(self.namespaces[role]):
            yield

    def command(self, role: Role, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run in `role`'s namespace (`ip netns exec <ns> ...`)."""
        self._require_started()
        return ["ip", "netns", "exec", self.namespaces[role], *argv]

    def run(
        self, role: Role, argv: Sequence[str], *, timeout: float = 60, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in `role`'s namespace and wait, capturing text output; LabError if check and it fails."""
        kwargs.setdefault("capture_output", True)
        done = subprocess.run(self.command(role, argv), text=True, timeout=timeout, check=False, **kwargs)
        if check and done.returncode != 0:
            raise LabError(f"{' '.join(argv)} in {role} exited {done.returncode}: {(done.stderr or '').strip()}")
        return done

    def popen(self, role: Role, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in `role`'s namespace; the lab terminates it (then kills it) at close."""
        process: subprocess.Popen[Any] = subprocess.Popen(self.command(role, argv), **kwargs)
        self._processes.append(process)
        return process

    def python(
        self, role: Role, code: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -c code args...` (this interpreter) in `role`'s namespace; LabError on non-zero exit."""
        full_env = None if env is None else {**os.environ, **env}
        return self.run(role, [sys.executable, "-c", code, *args], env=full_env, timeout=timeout)

    def sysctl(self, role: Role, name: str) -> str:
        """Read a sysctl as seen in `role`'s namespace."""
        return _run(self.command(role, ["sysctl", "-n", name])).strip()

    def sysctl_set(self, role: Role, values: Mapping[str, str]) -> None:
        """Write sysctls in `role`'s namespace."""
        _run(self.command(role, ["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in values.items())]))

    def nft(self, role: Role, ruleset: str) -> None:
        """Load an nftables ruleset (nft -f syntax) in `role`'s namespace."""
        _run(self.command(role, ["nft", "-f", "-"]), stdin=ruleset)

    # -- services and connections ----------------------------------------------------------------------------
    def expose(self, port: int, *, backends: int = 2, target_port: int | None = None) -> tuple[str, int]:
        """DNAT VIP:port to the first `backends` backend addresses (random, like kube-proxy); return VIP:port."""
        if not 1 <= backends <= len(BACKENDS):
            raise ValueError(f"backends must be 1..{len(BACKENDS)}")
        addresses = BACKENDS[:backends]
        if port in self._exposed:
            if self._exposed[port] != addresses:
                raise LabError(f"port {port} is already exposed to {self._exposed[port]}")
            return (VIP, port)
        to = f":{target_port or port}"
        if backends == 1:
            target = f"{addresses[0]}{to}"
        else:
            entries = ", ".join(f"{index} : {address}" for index, address in enumerate(addresses))
            target = f"numgen random mod {backends} map {{ {entries} }}{to}"
        self.nft(
            "node",
            f"add rule ip {NAT_TABLE} prerouting ip daddr {VIP} tcp dport {port} counter dnat to {target}\n",
        )
        self._exposed[port] = addresses
        return (VIP, port)

    def serve(self, port: int, handler: Handler, *, backends: int = 2) -> LabServer:
        """Listen on `port` at the first `backends` backend addresses in the server ns and expose VIP:port."""
        self._require_started()
        server = LabServer(self, port, handler, BACKENDS[:backends])
        self._servers.append(server)
        self.expose(port, backends=backends)
        return server

    def connect(self, port: int, *, keepalive: Policy | None, timeout: float | None = 10) -> socket.socket:
        """A TCP connection from the client ns to VIP:port.

        Made by `keepalive.create_connection(policy=keepalive)`, or a plain socket without keepalive when
        `keepalive` is None. The lab closes it at teardown.
        """
        with self.inside("client"):
            if keepalive is None:
                sock = socket.create_connection((VIP, port), timeout=timeout)
            else:
                from keepalive import create_connection

                sock = create_connection((VIP, port), timeout=timeout, policy=keepalive)
        self._sockets.append(sock)
        return sock

    def block(self, role: Role = "server") -> None:
        """Drop every packet in and out of `role`'s namespace (a dead peer: no RST, no FIN, nothing)."""
        self.nft(role, _BLACKHOLE_RULESET)

    def unblock(self, role: Role = "server") -> None:
        """Undo `block(role)`."""
        _run(self.command(role, ["nft", "delete", "table", "inet", BLACKHOLE_TABLE]))

    @contextmanager
    def blocked(self, role: Role = "server") -> Iterator[None]:
        """`block(role)` for the duration of the block."""
        self.block(role)
        try:
            yield
        finally:
            self.unblock(role)

    # -- observing the node ----------------------------------------------------------------------------------
    def conntrack_stats(self) -> dict[str, int]:
        """/proc/net/stat/nf_conntrack of the node namespace, summed over CPUs (`invalid`, `drop`, ...)."""
        return parse_conntrack_stats(_run(self.command("node", ["cat", "/proc/net/stat/nf_conntrack"])))

    def invalid_dropped(self) -> int:
        """Packets dropped by the node's `ct state invalid drop` rule (its nftables counter)."""
        text = _run(self.command("node", ["nft", "list", "chain", "ip", NAT_TABLE, "forward"]))
        match = re.search(r"ct state invalid counter packets (\d+)", text)
        return int(match.group(1)) if match else 0

    def conntrack_entries(self) -> str:
        """`conntrack -L` in the node namespace (needs the conntrack tool), for debugging output."""
        return _run(self.command("node", ["conntrack", "-L"])).strip()

    def _require_started(self) -> None:
        if not self.started or self.closed:
            raise LabError("the lab is not running (use `with Lab() as lab:` or lab.start())")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self.started else "new"
        return f"<Lab {self.run_id} {state} conntrack_timeout={self.conntrack_timeout}>"


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=3)


def wait_for_port(lab: Lab, role: Role, address: str, port: int, *, timeout: float = 10) -> None:
    """Wait until something accepts TCP connections on address:port, as seen from `role`'s namespace."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with lab.inside(role), socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(f"nothing listens on {address}:{port} in {role} after {timeout} s") from None
            time.sleep(0.05)
