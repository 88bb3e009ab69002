"""``keepalive <command>``: dispatches to one module per command.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code); it is imported
only when its command is listed or run, so ``keepalive check`` never pays for the lab or the benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final

from keepalive._version import __version__

__all__ = ["main"]

#: command -> (module, one-line help)
_COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "check": ("keepalive.checker._cli", "find the path's idle timeouts and check that keepalive fits them"),
    "audit": ("keepalive._audit_cli", "list a process's TCP connections and their keepalive state"),
    "run": ("keepalive._install_cli", "run a program (any language) with keepalive on every TCP connection it makes"),
    "lab": ("keepalive.lab._cli", "demo: reproduce the conntrack idle timeout in network namespaces (root)"),
    "enforce": ("keepalive._enforce_cli", "enforce a policy on every TCP connection of a cgroup (root, BPF)"),
    "policy": (
        "keepalive._policy_cli",
        "print the default policy, where it comes from, and platform support",
    ),
}


def _load(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None  # this command is not part of this installation
        raise


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by the docs and the tests too)."""
    parser = argparse.ArgumentParser(
        prog="keepalive",
        description="TCP keepalive below the path's idle timeout: check a node, audit a process, run a program.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (repeat for debug) to standard error"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keepalive`` console script and ``python -m keepalive``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args))
    except KeyboardInterrupt:
        return 130
