"""anyio: the same code on the asyncio and the trio backend; listener and client both carry keepalive."""

import socket

import anyio
from anyio.abc import SocketAttribute, SocketStream

import keepalive
import keepalive.anyio

POLICY = keepalive.Policy(idle=30, interval=5, count=4)


async def echo(stream: SocketStream) -> None:
    async with stream:
        await stream.send(await stream.receive())


async def main() -> None:
    listener = await keepalive.anyio.create_tcp_listener(local_host="127.0.0.1", policy=POLICY)
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)

        # Drop-in for anyio.connect_tcp(): happy eyeballs, tls=/ssl_context=/tls_hostname= as usual, plus policy=.
        async with await keepalive.anyio.connect_tcp("127.0.0.1", port, policy=POLICY) as stream:
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
            sock = stream.extra(SocketAttribute.raw_socket)  # anyio's public accessor
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == POLICY.idle
        tg.cancel_scope.cancel()


for backend in ("asyncio", "trio"):
    anyio.run(main, backend=backend)
    print(backend, "backend: ok")
