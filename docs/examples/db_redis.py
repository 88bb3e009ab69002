"""requires: redis

redis-py, sync and asyncio: the policy as redis-py's socket_keepalive / socket_keepalive_options."""

import asyncio

import redis
import redis.asyncio

import keepalive
import keepalive.adapters.redis

kwargs = keepalive.adapters.redis.connection_kwargs(keepalive.Policy.below(240))  # Azure LB / NAT: 4 min
print("redis-py arguments:", kwargs)

r = redis.Redis(host="127.0.0.1", port=6379, **kwargs)  # every connection of its pool, reconnects included
try:
    r.ping()
    print("server tcp-keepalive:", r.config_get("tcp-keepalive"))
finally:
    r.close()


async def main() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=6379, **kwargs)
    try:
        await client.ping()
    finally:
        await client.aclose()


asyncio.run(main())
