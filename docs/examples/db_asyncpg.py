"""requires: postgres

asyncpg: no keepalive option of its own (asyncpg#606); the adapter sets the policy on each connection's socket."""

import asyncio

import asyncpg

import keepalive
import keepalive.adapters.asyncpg

URL = "postgresql://postgres@127.0.0.1:5432/test"
policy = keepalive.Policy(idle=60, interval=10, count=5)


async def register_codecs(conn: asyncpg.Connection) -> None:
    """Your own pool init: it still runs, after the policy is applied."""
    await conn.set_type_codec("json", encoder=str, decoder=str, schema="pg_catalog")


async def main() -> None:
    # A pool: init= runs once per new physical connection, so replacements get the policy too.
    pool = await asyncpg.create_pool(
        URL, min_size=1, max_size=4, init=keepalive.adapters.asyncpg.init(policy, then=register_codecs)
    )
    async with pool, pool.acquire() as conn:
        print("pooled connection, client port", await conn.fetchval("select inet_client_port()"))

    # One connection.
    conn = await keepalive.adapters.asyncpg.connect(URL, policy=policy)
    try:
        print("single connection, client port", await conn.fetchval("select inet_client_port()"))
    finally:
        await conn.close()


asyncio.run(main())
