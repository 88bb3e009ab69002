"""The docs build with only `pip install -e '.[docs]'`: docs/conf.py mocks every third-party module keepalive's
optional modules import. (Building the docs in a fresh venv is too slow for the suite; this checks the list.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mocked() -> set[str]:
    """``_OPTIONAL_CLIENTS`` from docs/conf.py, read without running it."""
    tree = ast.parse((ROOT / "docs" / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_OPTIONAL_CLIENTS" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return set(value)
    raise AssertionError("docs/conf.py has no _OPTIONAL_CLIENTS list")


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (anywhere in it) that is neither stdlib nor keepalive."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top != "keepalive" and top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    if "importlib.import_module" in path.read_text(encoding="utf-8"):  # pymysql's adapter imports by name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                top = node.args[0].value.split(".")[0]
                if top != "keepalive":
                    found.add(top)
    return found


def test_docs_mock_every_third_party_module_keepalive_imports() -> None:
    """Each adapter, runtime wrapper or optional feature that imports a client (or a client's dependency, such
    as httpcore or aiormq) has it in docs/conf.py's mock list, so autodoc can import the module without it."""
    mocked = _mocked()
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "keepalive").rglob("*.py"))
        for name in _third_party_imports(path)
        if name not in mocked
    }
    assert missing == set(), "add these to _OPTIONAL_CLIENTS in docs/conf.py"


def test_the_import_parser_sees_the_adapters_clients() -> None:
    """The check above would catch a new client: it finds the ones the adapters import today."""
    adapters = ROOT / "keepalive" / "adapters"
    assert {"httpx", "httpcore"} <= _third_party_imports(adapters / "httpx.py")
    assert {"aio_pika", "aiormq", "yarl"} <= _third_party_imports(adapters / "aio_pika.py")
    assert "pymysql" in _third_party_imports(adapters / "pymysql.py")
    assert _third_party_imports(ROOT / "keepalive" / "_policy.py") == set()
