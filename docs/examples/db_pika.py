"""requires: rabbitmq

pika: the policy as ConnectionParameters(tcp_options=...), for any pika connection adapter."""

import pika

import keepalive
import keepalive.adapters.pika

policy = keepalive.Policy.below(350)
print("tcp_options:", keepalive.adapters.pika.tcp_options(policy))

params = keepalive.adapters.pika.connection_parameters(
    policy, host="127.0.0.1", port=5672, credentials=pika.PlainCredentials("guest", "guest")
)
connection = pika.BlockingConnection(params)
try:
    channel = connection.channel()
    result = channel.queue_declare("", exclusive=True)
    print("declared", result.method.queue)
finally:
    connection.close()
