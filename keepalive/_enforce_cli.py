"""Enforce a keepalive policy on every TCP connection of a cgroup, any language, with a kernel (sock_ops BPF) program.

  keepalive enforce --cgroup PATH [--policy SPEC | --path-timeout SECONDS] [--skip-loopback]
  keepalive enforce --cgroup PATH --remove
  keepalive enforce --status [--json]

Needs root (CAP_BPF and CAP_NET_ADMIN), a cgroup v2 directory and a mounted BPF filesystem. The attachment stays
after the command exits, until --remove; running it again on a cgroup replaces the policy without a gap.
"""

from __future__ import annotations

import argparse
import json
import sys

from keepalive._exceptions import InvalidPolicy

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keepalive enforce`` options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--cgroup", metavar="PATH", help="a cgroup v2 directory (e.g. /sys/fs/cgroup/kubepods.slice)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--policy", metavar="SPEC", help='the policy: "idle,interval,count[,user_timeout]"')
    choice.add_argument(
        "--path-timeout", metavar="SECONDS", type=float, help="enforce Policy.below(SECONDS) for this path idle timeout"
    )
    parser.add_argument("--skip-loopback", action="store_true", help="leave connections to 127.0.0.0/8 and ::1 alone")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--remove", action="store_true", help="detach the program from --cgroup")
    action.add_argument("--status", action="store_true", help="list the enforced cgroups, policies and counters")
    parser.add_argument("--json", action="store_true", help="with --status: print a JSON list")


def _usage(message: str) -> int:
    print(f"keepalive enforce: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Attach, remove or list; exit 2 on bad usage or when the node lacks what enforcement needs."""
    from keepalive._enforce import EnforcementError, enforce, enforcement_status, remove_enforcement
    from keepalive._policy import Policy

    if args.status:
        if args.policy or args.path_timeout is not None or args.skip_loopback:
            return _usage("--status takes no policy options")
    elif not args.cgroup:
        return _usage("--cgroup PATH is required (or --status)")
    elif args.json:
        return _usage("--json goes with --status")
    if args.remove and (args.policy or args.path_timeout is not None or args.skip_loopback):
        return _usage("--remove takes no policy options")
    try:
        if args.status:
            entries = enforcement_status()
            if args.cgroup:
                from os.path import realpath

                entries = [e for e in entries if e.cgroup == realpath(args.cgroup)]
            if args.json:
                print(json.dumps([e.to_dict() for e in entries], indent=2))
                return 0
            if not entries:
                print("no cgroup is under keepalive enforcement")
            for entry in entries:
                state = "attached" if entry.attached else "DETACHED (the cgroup is gone: --remove it)"
                print(f"{entry.cgroup}  [{state}, {entry.mode}]")
                print(f"  policy:   {entry.policy}{' (loopback skipped)' if entry.skip_loopback else ''}")
                print(
                    f"  seen {entry.seen}, tightened {entry.tightened}, within {entry.within}, "
                    f"skipped loopback {entry.skipped_loopback}, set outright {entry.set_outright}, "
                    f"failed {entry.failed}"
                )
                print(f"  pinned:   {entry.pin_dir} (program id {entry.program_id}, {entry.memory_bytes} bytes)")
            return 0
        if args.remove:
            if remove_enforcement(args.cgroup):
                print(f"removed keepalive enforcement from {args.cgroup}")
            else:
                print(f"{args.cgroup} was not under keepalive enforcement: nothing to remove")
            return 0
        if args.policy:
            policy: Policy | None = Policy.parse(args.policy)
        elif args.path_timeout is not None:
            policy = Policy.below(args.path_timeout)
        else:
            policy = None
        entry = enforce(args.cgroup, policy, skip_loopback=args.skip_loopback)
    except InvalidPolicy as exc:
        return _usage(str(exc))
    except EnforcementError as exc:
        return _usage(str(exc))
    except OSError as exc:  # a bpf(2) call or a pin failed in a way not foreseen above
        return _usage(f"{exc} (cgroup {args.cgroup})")
    print(
        f"enforcing {entry.policy} on {entry.cgroup} ({entry.mode}"
        f"{', loopback skipped' if entry.skip_loopback else ''}); pinned at {entry.pin_dir}"
    )
    return 0
