"""requires: nats

nats-py: a client whose socket carries the policy, re-applied after every reconnect."""

import asyncio

import keepalive
import keepalive.adapters.nats


async def main() -> None:
    async def reconnected() -> None:  # your callback still runs, after the policy is back on the new socket
        print("reconnected")

    nc = await keepalive.adapters.nats.connect(
        "nats://127.0.0.1:4222", policy=keepalive.Policy.below(350), reconnected_cb=reconnected
    )
    try:
        sub = await nc.subscribe("greetings")
        await nc.publish("greetings", b"hello")
        print("received", (await sub.next_msg(timeout=5)).data)
    finally:
        await nc.close()


asyncio.run(main())
