"""`keepalive check` run inside the lab's node namespace (where the DNAT and conntrack live, as on a Kubernetes
node) finds the short established timeout, and the policy it recommends keeps an idle connection alive.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from keepalive import Policy
from keepalive.lab import Lab, scenarios
from tests.helpers import require_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CONNTRACK_TIMEOUT = 3
IDLE_FOR = 2 * CONNTRACK_TIMEOUT + 1
HOLD_PORT = 8100


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(conntrack_timeout=CONNTRACK_TIMEOUT) as lab:
        yield lab


def test_checker_in_the_node_namespace_reports_the_low_timeout_and_its_policy_keeps_the_connection(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Traffic through the node while the checker looks, as on a real node: its conntrack table is in use.
    release = threading.Event()

    def hold(conn: socket.socket, backend: str) -> None:
        conn.recv(1)
        release.wait(30)

    server = lab.serve(HOLD_PORT, hold, backends=1)
    held = lab.connect(HOLD_PORT, keepalive=None)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEEPALIVE_")}
    try:
        done = lab.run("node", [sys.executable, "-m", "keepalive", "check", "--json"], check=False, env=env)
    finally:
        release.set()
        held.close()
        server.stop()
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    recommended = report["recommended_policy"]
    with capsys.disabled():
        print(f"\n[lab] keepalive check in the node namespace: exit {done.returncode}, path_timeout "
              f"{report['path_timeout']} ({report.get('path_timeout_origin')}), recommended {recommended}")  # fmt: skip

    assert report["path_timeout"] == CONNTRACK_TIMEOUT
    policy = Policy(
        idle=recommended["idle"],
        interval=recommended["interval"],
        count=recommended["count"],
        user_timeout=recommended["user_timeout"],
    )
    assert policy.idle + policy.interval < CONNTRACK_TIMEOUT

    without, with_ = scenarios.server_push(lab, [None, policy], idle_for=IDLE_FOR)
    assert not without.received  # the lab really drops the idle connection ...
    assert with_.received, with_.client_error  # ... and the checker's policy keeps it
    assert with_.server_acknowledged, with_.server_error
