"""List processes' TCP connections with their keepalive state and whether it fits the path's idle timeout.

Without --pid every process this user may inspect is audited. Options are read exactly where permitted
(same user with ptrace access, or root: pidfd_getfd); otherwise only the kernel's keepalive timer is shown.
Exit status: 0 no established connection lacks keepalive or has it too slow; 1 some do; 2 a process could not
be audited (no such process, permission denied) or this is not Linux.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from keepalive._audit import SocketState, audit
from keepalive._audit._verdict import _explain_path_timeout, _require_proc
from keepalive._exceptions import KeepaliveError
from keepalive._policy import Policy, resolve_default_policy

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keepalive audit`` flags."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--pid", type=_pid, metavar="PID", help="audit only this process (default: every process)")
    parser.add_argument("--json", action="store_true", help='print {"connections": [...], "errors": [...]} as JSON')
    parser.add_argument(
        "--path-timeout",
        type=float,
        metavar="SECONDS",
        help="the path's idle timeout to judge against (default: the one the checker detects, else the policy)",
    )
    parser.add_argument(
        "--policy",
        type=Policy.parse,
        metavar="IDLE,INTERVAL,COUNT",
        help="the policy to recommend (and judge against when no path timeout is known); default: the default policy",
    )


def _pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}") from None
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r} (must be positive)")
    return pid


def _pids(only: int | None) -> list[int]:
    if only is not None:
        return [only]
    own = os.getpid()
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != own)


def run(args: argparse.Namespace) -> int:
    """Audit, print, and return the exit status (0 fine, 1 offenders, 2 could not audit)."""
    out: TextIO = sys.stdout
    try:
        _require_proc()
        timeout, source = _explain_path_timeout(args.path_timeout)
    except (KeepaliveError, ValueError) as exc:
        print(f"keepalive audit: {exc}", file=sys.stderr)
        return 2
    policy: Policy = args.policy if args.policy is not None else resolve_default_policy()
    connections: list[SocketState] = []
    errors: list[dict[str, object]] = []
    for pid in _pids(args.pid):
        try:
            connections.extend(audit(policy, pid=pid, path_timeout=timeout))
        except ProcessLookupError as exc:
            if args.pid is not None:  # a process that exits while all are listed is not worth a line
                errors.append({"pid": pid, "reason": exc.strerror or str(exc)})
        except PermissionError as exc:
            errors.append({"pid": pid, "reason": exc.strerror or str(exc)})
        except OSError as exc:
            errors.append({"pid": pid, "reason": f"{type(exc).__name__}: {exc}"})
    offenders = [c for c in connections if c.state == "ESTABLISHED" and c.offending]
    if args.json:
        document = {
            "path_timeout": timeout,
            "path_timeout_source": source,
            "policy": {"idle": policy.idle, "interval": policy.interval, "count": policy.count},
            "connections": [c.to_dict() for c in connections],
            "errors": errors,
        }
        json.dump(document, out, indent=2)
        out.write("\n")
    elif args.pid is not None and errors:
        print(f"keepalive audit: process {args.pid}: {errors[0]['reason']}", file=sys.stderr)
    else:
        _print_text(
            out, connections=connections, errors=errors, timeout=timeout, source=source, policy=policy, only=args.pid
        )
    if args.pid is not None and errors:
        return 2
    return 1 if offenders else 0


def _print_text(
    out: TextIO,
    *,
    connections: list[SocketState],
    errors: list[dict[str, object]],
    timeout: float | None,
    source: str,
    policy: Policy,
    only: int | None,
) -> None:
    if timeout is not None:
        print(f"path timeout: {timeout:g} s ({source})", file=out)
    else:
        print(f"path timeout: {source}; judging against the policy ({policy})", file=out)
    header = ("PID", "FD", "STATE", "LOCAL", "REMOTE", "KEEPALIVE", "IDLE", "INTVL", "CNT", "USER_TO", "VERDICT")
    rows = [header]
    for c in connections:
        rows.append(
            (
                str(c.pid),
                str(c.fd),
                c.state,
                c.local,
                c.remote,
                {True: "on", False: "off", None: "?"}[c.keepalive],
                _text(c.idle),
                _text(c.interval),
                _text(c.count),
                _text(c.user_timeout),
                c.verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows if connections else []:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    for c in connections:
        if c.verdict != "ok" and c.state == "ESTABLISHED":
            print(f"\n{c.pid}/{c.fd} {c.local} -> {c.remote}: {c.verdict}: {c.reason}", file=out)
            if c.fix:
                print(f"  fix: {c.fix}", file=out)
    if not connections:
        print("(no TCP connections)", file=out)
    if errors:
        if only is None and len(errors) > 3:
            print(f"\n{len(errors)} processes could not be audited (--json lists why; root sees all)", file=out)
        else:
            for error in errors:
                print(f"\nprocess {error['pid']}: {error['reason']}", file=out)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
