"""Sphinx configuration for the keepalive documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs /tmp/docs-out

Pages are MyST Markdown; the API reference (api.md) is generated from the docstrings by autodoc + napoleon.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the checked-out package, not whatever version happens to be installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

project = "keepalive"
author = "keepalive contributors"
copyright = "keepalive contributors"
_version_text = (ROOT / "keepalive" / "_version.py").read_text(encoding="utf-8")
_version_match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", _version_text)
release = _version_match.group(1) if _version_match else "0+unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "keepalive_docs",  # _ext/keepalive_docs.py: real command output and the middlebox preset table
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "examples", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# -- MyST -------------------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "attrs_inline"]
# Headings up to ### get anchors, so pages can link to [a section](policy.md#tcp-user-timeout).
myst_heading_anchors = 3

# -- autodoc / napoleon ------------------------------------------------------------------------------------------
# api.md says :members: where it wants them (keepalive.checker's names are documented once, as keepalive.*).
autodoc_default_options = {
    "show-inheritance": True,
    "member-order": "bysource",
}
# Type hints stay in the signature, as a mypy user reads them; short names (Policy, not keepalive._policy.Policy).
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
python_use_unqualified_type_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# Optional clients: an adapter module imports its client at the top. Where a client is not installed the
# reference is still built, from a mock of the client (only the missing ones are mocked, so installed clients
# give real type hints): `pip install -e '.[docs]'` alone builds every page. Every third-party module that
# keepalive's optional modules import must be listed (tests/test_docs_mocks.py checks it), including the ones
# an adapter imports from its client's dependencies (httpcore for httpx, aiormq for aio-pika).
_OPTIONAL_CLIENTS = [
    "aio_pika",
    "aiohttp",
    "aiomysql",
    "aiormq",
    "anyio",
    "asyncpg",
    "httpcore",
    "httpx",
    "nats",
    "pika",
    "psycopg",
    "psycopg2",
    "pymysql",
    "redis",
    "requests",
    "sqlalchemy",
    "trio",
    "urllib3",
    "yarl",
    "yaml",
]


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


autodoc_mock_imports = [name for name in _OPTIONAL_CLIENTS if _missing(name)]

# -- HTML -------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"keepalive {release}"
html_static_path: list[str] = []
html_theme_options: dict[str, Any] = {
    "source_repository": "https://github.com/tcp-keepalive/keepalive/",
    "source_branch": "main",
    "source_directory": "docs/",
}

# -- benchmark results ------------------------------------------------------------------------------------------
# benchmarks.md includes benchmarks/results/results.md, which only exists after a full benchmark run. Until then
# the include is replaced by a note, so the site builds (warning-free) from any checkout.
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results" / "results.md"
_INCLUDE_BLOCK = re.compile(r"```\{include\} \.\./benchmarks/results/results\.md\n(?::[^\n]*\n)*```\n")


def _benchmark_results_or_note(app: Any, docname: str, source: list[str]) -> None:
    if docname != "benchmarks" or BENCHMARK_RESULTS.is_file():
        return
    note = (
        ":::{note}\n"
        "No results in this checkout yet: `benchmarks/results/results.md` is written by a full benchmark run "
        "(see above). The published site includes the table of the latest run here.\n"
        ":::\n"
    )
    source[0] = _INCLUDE_BLOCK.sub(note, source[0])


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _benchmark_results_or_note)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
