"""Every script in docs/examples/ runs and exits 0, so the examples the docs show cannot rot.

A script's docstring may start with ``requires: postgres`` (or redis, mariadb, rabbitmq, nats, root; several
separated by commas or ``|``): the script is then skipped where that is missing, and fails instead under
KEEPALIVE_REQUIRE_SERVICES=1 / KEEPALIVE_REQUIRE_LAB=1 (tests/helpers.py).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require_lab, require_service

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

#: What ``requires:`` may name: a local service (host, port) or root for the namespace lab.
SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "mariadb": ("127.0.0.1", 3306),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "nats": ("127.0.0.1", 4222),
}
LAB = {"root", "lab"}


def requirements(script: Path) -> list[str]:
    """The names after ``requires:`` on the first line of the script's docstring."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    first = docstring.strip().splitlines()[0] if docstring.strip() else ""
    # "requires: postgres", "requires: postgres, redis", "requires: root -- what the script shows ..."
    match = re.match(r"\s*requires:\s*(\w+(?:\s*[,|]\s*\w+)*)", first, re.IGNORECASE)
    if not match:
        return []
    return [name.strip().lower() for name in re.split(r"[,|]", match.group(1)) if name.strip()]


def _marks(script: Path) -> list[pytest.MarkDecorator]:
    needs = requirements(script)
    marks = []
    if any(name in SERVICES for name in needs):
        marks.append(pytest.mark.services)
    if any(name in LAB for name in needs):
        marks.append(pytest.mark.lab)
    return marks


def test_there_are_examples() -> None:
    assert SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_names_only_known_requirements(script: Path) -> None:
    unknown = set(requirements(script)) - set(SERVICES) - LAB
    assert not unknown, f"{script.name}: unknown requires: {sorted(unknown)}; known: {sorted(SERVICES) + sorted(LAB)}"


@pytest.mark.parametrize("script", [pytest.param(s, id=s.name, marks=_marks(s)) for s in SCRIPTS])
def test_example_runs_and_exits_0(script: Path, tmp_path: Path) -> None:
    """Run as a user would: a fresh interpreter, this checkout importable, no KEEPALIVE_* settings from the test
    environment, an empty working directory that the script must leave empty."""
    for name in requirements(script):
        if name in SERVICES:
            require_service(name, *SERVICES[name])
        elif name in LAB:
            require_lab()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPALIVE_") or k.startswith("KEEPALIVE_REQUIRE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, (
        f"{script.name} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert list(tmp_path.iterdir()) == [], f"{script.name} left files behind: {list(tmp_path.iterdir())}"


def _pages() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in (ROOT / "docs").rglob("*.md"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_is_shown_on_some_page(script: Path) -> None:
    """An example nobody can see is dead weight: every script is literalinclude'd by a docs page."""
    pattern = re.compile(r"\{literalinclude\}\s+\S*examples/" + re.escape(script.name) + r"\s")
    assert pattern.search(_pages()), f"no docs page includes examples/{script.name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_has_a_docstring_that_says_what_it_shows(script: Path) -> None:
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    assert docstring, f"{script.name} has no module docstring"
