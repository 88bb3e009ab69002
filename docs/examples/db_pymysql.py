"""requires: mariadb

PyMySQL: a connection whose socket is opened with the policy (and re-opened with it on reconnect)."""

import keepalive
import keepalive.adapters.pymysql

conn = keepalive.adapters.pymysql.connect(
    host="127.0.0.1", port=3306, user="root", password="", database="test", policy=keepalive.Policy.below(350)
)
try:
    with conn.cursor() as cur:
        cur.execute("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")
        print("the server sees this connection from", cur.fetchone()[0])
        cur.execute("SHOW VARIABLES LIKE 'wait_timeout'")
        print("server idle limit:", cur.fetchone())
finally:
    conn.close()
