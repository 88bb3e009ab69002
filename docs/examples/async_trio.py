"""trio: serve_tcp() whose streams carry keepalive, and open_tcp_stream() that sets it before connect()."""

import functools
import socket

import trio

import keepalive
import keepalive.trio

POLICY = keepalive.Policy.below(240)  # e.g. Azure Load Balancer / NAT Gateway: 4 minutes


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(keepalive.trio.serve_tcp, host="127.0.0.1", policy=POLICY)
        listeners = await nursery.start(serve, echo, 0)
        port = listeners[0].socket.getsockname()[1]

        # Drop-in for trio.open_tcp_stream(): same happy eyeballs and errors, plus policy=.
        async with await keepalive.trio.open_tcp_stream("127.0.0.1", port, policy=POLICY) as stream:
            await stream.send_all(b"ping")
            assert await stream.receive_some(4) == b"ping"
            assert stream.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # trio's public accessor
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == POLICY.idle
        print("policy:", POLICY)
        nursery.cancel_scope.cancel()


trio.run(main)
