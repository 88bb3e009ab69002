"""Directives that put real program output into the docs at build time, so it cannot go stale.

``keepalive-output``: run ``python -m keepalive ARGS`` from this checkout and show the command and its output::

    ```{keepalive-output} policy --below 350
    ```

``keepalive-middleboxes``: the middlebox presets (``KEEPALIVE_MIDDLEBOX`` / ``--middlebox``) as a table, with the
policy :meth:`keepalive.Policy.below` derives for each.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def _clean_environment() -> dict[str, str]:
    """The build's environment without KEEPALIVE_* variables, with a fixed terminal width for argparse."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KEEPALIVE_")}
    env["COLUMNS"] = "100"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["KEEPALIVE_CHECK"] = "0"
    return env


class KeepaliveOutput(SphinxDirective):
    """Show ``$ keepalive ARGS`` and what it prints; a failing command is a build warning."""

    required_arguments = 1
    final_argument_whitespace = True
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"returncode": directives.nonnegative_int}

    def run(self) -> list[nodes.Node]:
        command = self.arguments[0].strip()
        expected = self.options.get("returncode", 0)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "keepalive", *shlex.split(command)],
                capture_output=True,
                text=True,
                env=_clean_environment(),
                cwd=ROOT,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("keepalive %s: %s", command, exc, location=self.get_location())
            return []
        if result.returncode != expected:
            log.warning(
                "keepalive %s exited %d (expected %d): %s",
                command,
                result.returncode,
                expected,
                (result.stderr or result.stdout).strip()[-500:],
                location=self.get_location(),
            )
        text = f"$ keepalive {command}\n{result.stdout}{result.stderr}".rstrip() + "\n"
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _table(headers: list[str], rows: list[list[str]], widths: list[int]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for section, cells, literal_first in ((head, [headers], False), (body, rows, True)):
        for cells_of_row in cells:
            row = nodes.row()
            for index, cell in enumerate(cells_of_row):
                entry = nodes.entry()
                if literal_first and index == 0:
                    entry += nodes.paragraph("", "", nodes.literal(cell, cell))
                else:
                    entry += nodes.paragraph(cell, cell)
                row += entry
            section.append(row)
    return table


class KeepaliveMiddleboxes(SphinxDirective):
    """The preset table, straight from ``keepalive._path._middleboxes``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        try:  # conf.py puts this checkout first on sys.path
            from keepalive import Policy
            from keepalive._path._middleboxes import MIDDLEBOX_NOTES, MIDDLEBOXES
        except ImportError as exc:
            log.warning("middlebox presets unavailable: %s", exc, location=self.get_location())
            return []
        rows = []
        for name, timeout in sorted(MIDDLEBOXES.items(), key=lambda item: (item[1], item[0])):
            policy = Policy.below(timeout)
            rows.append(
                [name, f"{timeout:g} s", f"{policy.idle} / {policy.interval} / {policy.count}", MIDDLEBOX_NOTES[name]]
            )
        headers = ["preset", "idle timeout", "below(): idle / interval / count", "device"]
        return [_table(headers, rows, [18, 12, 20, 50])]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("keepalive-output", KeepaliveOutput)
    app.add_directive("keepalive-middleboxes", KeepaliveMiddleboxes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
