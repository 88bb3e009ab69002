"""requires: mariadb

aiomysql: a connection that applies the policy each time it (re)connects."""

import asyncio

import keepalive
import keepalive.adapters.aiomysql


async def main() -> None:
    conn = await keepalive.adapters.aiomysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", db="test", policy=keepalive.Policy.below(350)
    )
    try:
        await conn.ping(reconnect=True)  # a reconnect here would open a socket with the policy too
        async with conn.cursor() as cur:
            await cur.execute("SELECT CONNECTION_ID()")
            print("connection id", (await cur.fetchone())[0])
    finally:
        conn.close()


asyncio.run(main())
