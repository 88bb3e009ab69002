"""requires: postgres

SQLAlchemy: instrument() an Engine or AsyncEngine once; every connection its pool opens gets the policy."""

import asyncio

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

import keepalive
import keepalive.adapters.sqlalchemy

policy = keepalive.Policy(idle=60, interval=10, count=5)

# Sync engine (psycopg): libpq gets keepalives_* as connect arguments.
engine = keepalive.adapters.sqlalchemy.instrument(create_engine("postgresql+psycopg://postgres@127.0.0.1/test"), policy)
with engine.connect() as conn:
    print("psycopg connection, client port", conn.execute(text("select inet_client_port()")).scalar_one())
engine.dispose()


async def main() -> None:
    # Async engine (asyncpg): the pool's connect event applies the policy to each connection's socket.
    aengine = keepalive.adapters.sqlalchemy.instrument(
        create_async_engine("postgresql+asyncpg://postgres@127.0.0.1/test", pool_recycle=3600), policy
    )
    try:
        async with aengine.connect() as conn:
            port = (await conn.execute(text("select inet_client_port()"))).scalar_one()
            print("asyncpg connection, client port", port)
    finally:
        await aengine.dispose()


asyncio.run(main())
