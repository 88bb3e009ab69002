"""Real clients through their adapters, end to end through the conntrack lab: httpx's connection pool and a
Redis subscriber (redis-server running inside the server namespace). Each idles for over twice the node's
conntrack timeout and asserts the failure without the adapter as well as the success with it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from keepalive import Policy
from keepalive.adapters import httpx as ka_httpx
from keepalive.adapters import redis as ka_redis
from keepalive.lab import Lab, wait_for_port
from tests.helpers import _truthy, require_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CONNTRACK_TIMEOUT = 3
IDLE_FOR = 2 * CONNTRACK_TIMEOUT + 1
POLICY = Policy.below(CONNTRACK_TIMEOUT)
HTTP_PORT = 8090
REDIS_PORT = 6379
#: clients per side behind two random backends: each plain one fails with probability about 1/2
HTTP_CLIENTS = 16


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(conntrack_timeout=CONNTRACK_TIMEOUT) as lab:
        yield lab


def _http_handler(conn: socket.socket, backend: str) -> None:
    """HTTP/1.1 with keep-alive: answers every request with the backend and the client port it came from."""
    conn.settimeout(60)
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buffer += chunk
            _, _, buffer = buffer.partition(b"\r\n\r\n")
            body = json.dumps({"backend": backend, "client_port": conn.getpeername()[1]}).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            conn.sendall(head + body)
    except OSError:
        return  # a reset from a re-balanced client


def test_httpx_pooled_connection_survives_the_idle_only_through_the_adapter(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """httpx pools keep connections for keepalive_expiry (60 s here), longer than the conntrack timeout. A
    pooled connection reused after the idle is re-balanced and reset without keepalive; with
    keepalive.adapters.httpx.HTTPTransport the same connection reaches the same backend."""
    server = lab.serve(HTTP_PORT, _http_handler, backends=2)
    url = f"http://{lab.vip}:{HTTP_PORT}/"
    limits = httpx.Limits(keepalive_expiry=60)
    with lab.inside("client"):  # connections (and any reconnection) are made from the client namespace
        plain = [httpx.Client(transport=httpx.HTTPTransport(limits=limits)) for _ in range(HTTP_CLIENTS)]
        adapted = [
            httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, limits=limits)) for _ in range(HTTP_CLIENTS)
        ]
        clients = plain + adapted
        try:
            first = [client.get(url, timeout=5).json() for client in clients]
            time.sleep(IDLE_FOR)
            second: list[dict[str, object] | Exception] = []
            for client in clients:
                try:
                    second.append(client.get(url, timeout=5).json())
                except httpx.TransportError as exc:
                    second.append(exc)
        finally:
            for client in clients:
                client.close()
    server.stop()
    plain_results, adapted_results = second[:HTTP_CLIENTS], second[HTTP_CLIENTS:]
    failed = [result for result in plain_results if isinstance(result, Exception)]
    with capsys.disabled():
        kinds = sorted({type(result).__name__ for result in failed})
        print(f"\n[lab] httpx pool without keepalive: {len(failed)}/{HTTP_CLIENTS} failed {kinds}")
        same = sum(a == b for a, b in zip(first[HTTP_CLIENTS:], adapted_results, strict=True))
        print(f"[lab] httpx pool with adapter {POLICY}: {same}/{HTTP_CLIENTS} same connection and backend")

    assert {result["backend"] for result in first} == set(lab.backends)
    assert failed, "no plain pooled connection was re-balanced: the lab did not reproduce the failure"
    assert adapted_results == first[HTTP_CLIENTS:]  # same backend, same client port: the pooled connection lived


@pytest.fixture(scope="module")
def redis_in_server_ns(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis-server listening on the first backend address inside the server namespace; VIP:6379 DNATs to it."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (Debian package redis-server)"
        if _truthy("KEEPALIVE_REQUIRE_LAB"):
            pytest.fail(f"{reason} (KEEPALIVE_REQUIRE_LAB=1)")
        pytest.skip(reason)
    directory: Path = tmp_path_factory.mktemp("redis")
    address = lab.backends[0]
    process = lab.popen(
        "server",
        ["redis-server", "--bind", address, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
         "--protected-mode", "no", "--dir", str(directory), "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(lab, "server", address, REDIS_PORT)
    lab.expose(REDIS_PORT, backends=1)
    yield address
    process.terminate()
    process.wait(timeout=10)


def test_redis_subscriber_gets_a_message_after_the_idle_only_through_the_adapter(
    lab: Lab, redis_in_server_ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Redis pub/sub subscriber idles; then a message is published. With redis-py's own keepalive defaults
    (30 s idle, above the 3 s conntrack timeout) the message never arrives and the server drops the subscriber;
    with keepalive.adapters.redis.connection_kwargs(policy=...) it arrives."""
    # redis-py connects lazily and reconnects on its own: every call that may open a socket runs inside the
    # namespace it belongs to, so no packet for a lab address ever leaves from the root namespace.
    with lab.inside("client"):
        plain = redis.Redis(host=lab.vip, port=REDIS_PORT)
        adapted = redis.Redis(host=lab.vip, port=REDIS_PORT, **ka_redis.connection_kwargs(policy=POLICY))
        subscribers = [plain.pubsub(), adapted.pubsub()]
        for subscriber in subscribers:
            subscriber.subscribe("events")
            confirmation = subscriber.get_message(timeout=5)
            assert confirmation is not None
            assert confirmation["type"] == "subscribe"
    with lab.inside("server"):
        publisher = redis.Redis(host=redis_in_server_ns, port=REDIS_PORT)  # on the server's side of the node
        publisher.ping()
    try:
        time.sleep(IDLE_FOR)
        with lab.inside("server"):
            receivers = publisher.publish("events", "deployed")
        with lab.inside("client"):
            plain_message, adapted_message = (subscriber.get_message(timeout=3) for subscriber in subscribers)
        time.sleep(0.5)
        with lab.inside("server"):
            remaining = dict(publisher.pubsub_numsub("events"))[b"events"]
    finally:
        with lab.inside("client"):
            for subscriber in subscribers:
                subscriber.close()
            plain.close()
            adapted.close()
        publisher.close()
    with capsys.disabled():
        print(f"\n[lab] redis pub/sub, redis-py defaults: message {plain_message!r}")
        print(f"[lab] redis pub/sub, adapter {POLICY}: message {adapted_message and adapted_message['data']!r}")
        print(f"[lab] redis subscribers left on the server after the publish: {remaining}")

    assert receivers == 2  # the server still believed in both subscribers
    assert plain_message is None
    assert adapted_message is not None
    assert adapted_message["data"] == b"deployed"
    assert remaining == 1  # the push to the plain subscriber was answered with a RST: the server dropped it
