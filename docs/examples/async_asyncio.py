"""asyncio: a server whose accepted connections carry keepalive, and a client that sets it before connect()."""

import asyncio
import socket

import keepalive
import keepalive.asyncio

POLICY = keepalive.Policy.below(350)  # e.g. an AWS NAT Gateway on the path: 350 s idle timeout


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Linux copies the listener's keepalive options to this accepted socket; elsewhere start_server() applies them.
    server_side = writer.get_extra_info("socket")
    print("server side SO_KEEPALIVE:", server_side.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    server = await keepalive.asyncio.start_server(echo, "127.0.0.1", 0, policy=POLICY)
    port = server.sockets[0].getsockname()[1]
    async with server:
        # Drop-in for asyncio.open_connection(): same arguments (ssl=, happy_eyeballs_delay=, ...) plus policy=.
        reader, writer = await keepalive.asyncio.open_connection("127.0.0.1", port, policy=POLICY)
        writer.write(b"ping")
        assert await reader.read(4) == b"ping"

        sock = writer.get_extra_info("socket")  # asyncio's public accessor
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == POLICY.idle
        print("client policy:", POLICY)
        writer.close()
        await writer.wait_closed()


asyncio.run(main())
