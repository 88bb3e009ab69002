"""Process-wide keepalive: keepalive.install() covers every TCP connection made from Python, without adapters."""

import asyncio
import socket

import keepalive

# A local server to connect to (any TCP server would do).
server = socket.create_server(("127.0.0.1", 0))
address = server.getsockname()


def idle_of(sock: socket.socket) -> int:
    """The keepalive idle time the kernel will use on this socket (0: keepalive is off)."""
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE):
        return 0
    idle_option = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))
    return sock.getsockopt(socket.IPPROTO_TCP, idle_option) if idle_option is not None else -1


keepalive.install(keepalive.Policy.below(350))  # e.g. the path crosses an AWS NAT Gateway (350 s)

# The stdlib, and everything built on it (urllib3/requests, PyMySQL, redis-py, kafka-python, ...).
with socket.create_connection(address) as sock:
    print("socket.create_connection: idle", idle_of(sock))
    assert idle_of(sock) == keepalive.Policy.below(350).idle


# asyncio (and so aiohttp, asyncpg, httpx on asyncio, ...).
async def main() -> None:
    _reader, writer = await asyncio.open_connection(*address)
    print("asyncio.open_connection: idle", idle_of(writer.get_extra_info("socket")))
    writer.close()
    await writer.wait_closed()


asyncio.run(main())

# Explicit configuration wins: a socket that already has its own keepalive timings keeps them.
with socket.socket() as sock:
    keepalive.apply(sock, keepalive.Policy(idle=20, interval=5, count=3))
    sock.connect(address)
    print("configured by hand before connect(): idle", idle_of(sock))
    assert idle_of(sock) == 20

# uninstall() puts the original socket.socket.connect back.
keepalive.uninstall()
with socket.create_connection(address) as sock:
    print("after uninstall(): idle", idle_of(sock), "(keepalive off)")
    assert idle_of(sock) == 0
server.close()
