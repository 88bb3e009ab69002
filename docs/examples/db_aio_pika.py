"""requires: rabbitmq

aio-pika: a robust connection whose every socket, reconnects included, carries the policy."""

import asyncio

import aio_pika

import keepalive
import keepalive.adapters.aio_pika


async def main() -> None:
    connection = await keepalive.adapters.aio_pika.connect_robust(
        "amqp://guest:guest@127.0.0.1:5672/", policy=keepalive.Policy.below(350)
    )
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        await message.ack()
        print("received", message.body)


asyncio.run(main())
