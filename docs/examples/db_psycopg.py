"""requires: postgres

psycopg 3 and psycopg_pool: libpq's own keepalive parameters from a keepalive policy."""

import socket

import psycopg
import psycopg_pool

import keepalive
import keepalive.adapters.psycopg

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
policy = keepalive.Policy.below(350)  # e.g. behind an AWS NAT gateway (350 s idle timeout)
params = keepalive.adapters.psycopg.connect_kwargs(policy)
print("libpq parameters:", params)

# One connection: the parameters are keyword arguments; they win over the DSN's own keepalives_*.
with psycopg.connect(DSN, **params) as conn:
    port = conn.execute("select inet_client_port()").fetchone()[0]
    # Read the options back from libpq's socket: wrap its fd for getsockopt, then let go of it again.
    with socket.socket(fileno=conn.fileno()) as sock:
        try:
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
        finally:
            sock.detach()  # the fd stays libpq's
    print(f"connection from local port {port}: keepalive idle {policy.idle}s")

# A pool: psycopg_pool passes kwargs= to every connection it opens, including replacements.
with (
    psycopg_pool.ConnectionPool(DSN, min_size=1, max_size=2, kwargs=params, open=True) as pool,
    pool.connection() as conn,
):
    conn.execute("select 1")

# Where only a connection string fits: the same parameters folded in.
print("conninfo:", keepalive.adapters.psycopg.conninfo("postgresql://postgres@127.0.0.1/test", policy))
