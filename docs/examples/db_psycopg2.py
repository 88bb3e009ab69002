"""requires: postgres

psycopg2: the same libpq keepalive parameters, for psycopg2.connect and its pools."""

import psycopg2
from psycopg2 import pool as pg_pool

import keepalive
import keepalive.adapters.psycopg2

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
params = keepalive.adapters.psycopg2.connect_kwargs(keepalive.Policy(idle=60, interval=10, count=5))

conn = psycopg2.connect(DSN, **params)
with conn, conn.cursor() as cur:
    cur.execute("show tcp_keepalives_idle")  # the server's side of the same connection (its own setting)
    print("server tcp_keepalives_idle:", cur.fetchone()[0])
conn.close()

pool = pg_pool.ThreadedConnectionPool(1, 4, DSN, **params)  # every pooled connection gets them
try:
    conn = pool.getconn()
    with conn.cursor() as cur:
        cur.execute("select 1")
    pool.putconn(conn)
finally:
    pool.closeall()
print("psycopg2 connections opened with", params)
