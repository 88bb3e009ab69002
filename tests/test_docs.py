"""The documentation site: it builds with warnings as errors (as CI does), and its API reference covers the
public API — every name in ``keepalive.__all__`` and every public module."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import keepalive
from tests.helpers import environ_without_keepalive

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow


def _public_modules() -> list[str]:
    """keepalive's modules whose dotted name has no part starting with an underscore."""
    names = ["keepalive"]
    for info in pkgutil.walk_packages(keepalive.__path__, "keepalive.", onerror=lambda name: None):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("furo")
    out = tmp_path_factory.mktemp("docs-html")
    env = environ_without_keepalive()
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return out, result


def test_docs_build_without_warnings(built_site: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = built_site
    assert result.returncode == 0, result.stderr[-6000:]
    assert (out / "index.html").is_file()


def _inventory(out: Path) -> set[str]:
    from sphinx.util.inventory import InventoryFile

    with (out / "objects.inv").open("rb") as handle:
        inventory = InventoryFile.load(handle, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # Sphinx >= 8.2 returns an _Inventory object
    names: set[str] = set()
    for objects in data.values():
        names.update(objects)
    return names


@pytest.mark.parametrize("name", sorted(n for n in keepalive.__all__ if not n.startswith("__")))
def test_every_public_name_is_in_the_api_reference(
    name: str, built_site: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out, result = built_site
    if not (out / "objects.inv").is_file():
        pytest.fail("the docs did not build:\n" + result.stderr[-3000:])
    assert f"keepalive.{name}" in _inventory(out), f"keepalive.{name} is not documented in docs/api.md"


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_has_an_automodule_in_api_md(module: str) -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    assert re.search(rf"^\.\. automodule:: {re.escape(module)}\s*$", api, re.MULTILINE), (
        f"docs/api.md has no '.. automodule:: {module}'"
    )


def test_every_page_is_reachable_from_the_index() -> None:
    """Sphinx warns about orphan pages too, but only when it builds; this says which page and is cheap."""
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert re.search(r"^\*$", index, re.MULTILINE), "index.md lost its catch-all '*' toctree entry"


_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _log_messages() -> list[tuple[str, str]]:
    """(where, format string) of every ``log.<level>("literal", ...)`` call in the package."""
    found = []
    for path in sorted((ROOT / "keepalive").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LOG_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger"}
            ):
                continue
            args = node.args[1:] if node.func.attr == "log" else node.args
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", args[0].value))
    return found


def test_log_calls_are_found() -> None:
    assert len(_log_messages()) > 10


@pytest.mark.parametrize(("where", "message"), _log_messages(), ids=[w for w, _ in _log_messages()])
def test_every_log_message_is_explained_in_logging_md(where: str, message: str) -> None:
    """docs/logging.md promises every runtime log message and what to do about it."""
    page = (DOCS / "logging.md").read_text(encoding="utf-8")
    assert f"`{message}`" in page, f"{where}: log message {message!r} is not in docs/logging.md"


def _finding_codes() -> list[str]:
    """Every ``Finding(Severity.X, "code", ...)`` code in the checker and the path model."""
    codes: set[str] = set()
    for path in [*(ROOT / "keepalive" / "checker").glob("*.py"), *(ROOT / "keepalive" / "_path").glob("*.py")]:
        codes.update(re.findall(r'Severity\.[A-Z]+,\s*"([a-z0-9-]+)"', path.read_text(encoding="utf-8")))
    return sorted(codes)


@pytest.mark.parametrize("code", _finding_codes())
def test_every_finding_code_is_in_logging_md(code: str) -> None:
    """The runtime check logs findings by code; each code is listed where users look it up."""
    assert f"`{code}`" in (DOCS / "logging.md").read_text(encoding="utf-8")
