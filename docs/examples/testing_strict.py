"""Run a small test suite with ``pytest --keepalive-strict``: the test whose client forgot keepalive fails."""

import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = """
import socket

import pytest

import keepalive


@pytest.fixture
def server():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()


@pytest.fixture
def plain_client(server):  # a client configured like most are: no keepalive
    with socket.create_connection(server) as sock:
        yield sock


@pytest.fixture
def tuned_client(server):  # keepalive below the path's idle timeout
    with keepalive.create_connection(server) as sock:
        yield sock


def test_plain(plain_client):
    plain_client.sendall(b"ping")


def test_tuned(tuned_client):
    tuned_client.sendall(b"ping")


@pytest.mark.keepalive_exempt(reason="talks to a server on the same host")
def test_exempt(plain_client):
    plain_client.sendall(b"ping")
"""

with tempfile.TemporaryDirectory() as project:
    Path(project, "test_clients.py").write_text(SUITE)
    Path(project, "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--keepalive-strict", "-q", "-rE"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    print(run.stdout)

assert run.returncode == 1, run.stdout + run.stderr
assert "3 passed, 1 error" in run.stdout, run.stdout
assert "ERROR at teardown of test_plain" in run.stdout
assert "SO_KEEPALIVE is off" in run.stdout
print("exit status 1: test_plain fails at teardown; test_tuned and test_exempt pass")
