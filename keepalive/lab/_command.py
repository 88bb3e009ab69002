"""Running the lab's commands (`ip`, `nft`, ...) and their one error type."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

__all__ = ["LabError", "run"]


class LabError(RuntimeError):
    """The lab could not be built or a command in it failed; the message has the command and its stderr."""


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30) -> str:
    """Run a command; its stdout, or LabError with the command line and its stderr."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise LabError(f"{' '.join(argv)} exited {done.returncode}: {detail}")
    return done.stdout
