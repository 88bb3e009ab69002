"""Build a conntrack lab in network namespaces (root, Linux), show an idle connection failing without keepalive
and surviving with it, print the timings and the node's conntrack counters, then remove everything.

Topology: client ns -> node ns (DNAT of 203.0.113.10 to random backends, `ct state invalid drop`, a short
nf_conntrack_tcp_timeout_established) -> server ns. Nothing is linked to the host's own network namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from keepalive._exceptions import InvalidPolicy
from keepalive._policy import Policy
from keepalive.lab import scenarios
from keepalive.lab._command import LabError
from keepalive.lab._topology import BACKENDS, CLIENT_ADDRESS, VIP, Lab, cleanup_stale, missing_requirements

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``keepalive lab [--conntrack-timeout S] [--idle-for S] [--policy SPEC] [--connections N] [--json]``."""
    parser.add_argument(
        "--conntrack-timeout",
        type=int,
        default=4,
        metavar="SECONDS",
        help="nf_conntrack_tcp_timeout_established in the node namespace (default: 4)",
    )
    parser.add_argument(
        "--idle-for",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long connections stay idle (default: twice the conntrack timeout)",
    )
    parser.add_argument(
        "--policy",
        metavar="IDLE,INTERVAL,COUNT",
        help="the keepalive policy to demonstrate (default: Policy.below(conntrack timeout))",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        metavar="N",
        help="connections per side in the two-backend scenario (default: 8)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="only delete lab namespaces left behind by processes that no longer exist",
    )


def _policy_text(policy: Policy | None) -> str:
    if policy is None:
        return "without keepalive"
    return f"keepalive {policy.idle},{policy.interval},{policy.count} (user_timeout {policy.user_timeout})"


def _push_text(outcome: scenarios.PushOutcome, wait: float) -> str:
    if outcome.received and outcome.latency is not None:
        text = f"arrived {outcome.latency * 1000:.1f} ms after the push"
    else:
        text = f"never arrived (client waited {wait:g} s after the push)"
    server = "acknowledged" if outcome.server_acknowledged else _short(outcome.server_error) or "no answer"
    return f"{text}; server: {server}"


def _request_text(outcomes: list[scenarios.RequestOutcome]) -> str:
    stayed = sum(outcome.stayed for outcome in outcomes)
    reset = sum(outcome.error is not None for outcome in outcomes)
    moved = len(outcomes) - stayed - reset
    parts = [f"{stayed}/{len(outcomes)} answered by their backend"]
    if reset:
        errors = sorted({_short(outcome.error) for outcome in outcomes if outcome.error})
        parts.append(f"{reset} failed ({', '.join(errors)})")
    if moved:
        parts.append(f"{moved} answered by another backend")
    return ", ".join(parts)


def _short(error: str | None) -> str:
    """The exception's class name from a scenario's "Class: message" text."""
    return (error or "").split(":", 1)[0]


def _policy_json(policy: Policy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "idle": policy.idle,
        "interval": policy.interval,
        "count": policy.count,
        "user_timeout": policy.user_timeout,
    }


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when it showed the failure without keepalive and the success with it.

    Exit 1 when it did not (or the lab could not be built: the kernel's exact error is printed), 2 when the lab
    cannot run here at all (not root, not Linux, missing tools) or the arguments are invalid.
    """
    if args.cleanup:
        deleted = cleanup_stale()
        print(
            f"keepalive lab: deleted {len(deleted)} stale namespace(s) and guard route(s)"
            + (": " + " ".join(deleted) if deleted else "")
        )
        return 0
    problems = missing_requirements()
    if problems:
        for problem in problems:
            print(f"keepalive lab: {problem}", file=sys.stderr)
        print("keepalive lab: run it as root on a Linux machine, e.g. `sudo keepalive lab`", file=sys.stderr)
        return 2
    timeout = args.conntrack_timeout
    idle_for = args.idle_for if args.idle_for is not None else 2.0 * timeout
    try:
        policy = Policy.parse(args.policy) if args.policy else Policy.below(timeout)
    except InvalidPolicy as exc:
        print(f"keepalive lab: {exc}", file=sys.stderr)
        return 2
    if timeout < 1 or idle_for <= timeout or args.connections < 1:
        print(
            "keepalive lab: need --conntrack-timeout >= 1, --idle-for above it and --connections >= 1", file=sys.stderr
        )
        return 2
    say = (lambda *_: None) if args.json else _say
    wait = 3.0
    started = time.monotonic()
    try:
        with Lab(conntrack_timeout=timeout) as lab:
            say(f"keepalive lab {lab.run_id}: client {CLIENT_ADDRESS} -> node (DNAT {VIP} -> {', '.join(BACKENDS)},")
            say(f"  `ct state invalid drop`, nf_conntrack_tcp_timeout_established = {timeout} s) -> server")
            before = lab.conntrack_stats()
            say(f"\n1. The server pushes one line after {idle_for:g} s idle (a watch event, a DB notification):")
            push = scenarios.server_push(lab, [None, policy], idle_for=idle_for, wait=wait)
            for outcome in push:
                say(f"   {_policy_text(outcome.policy):<34} {_push_text(outcome, wait)}")
            say(f"\n2. A request after {idle_for:g} s idle, two backends, random DNAT ({args.connections} per side):")
            request = scenarios.request_after_idle(
                lab, [None] * args.connections + [policy] * args.connections, idle_for=idle_for, wait=wait
            )
            without, with_ = request[: args.connections], request[args.connections :]
            say(f"   {_policy_text(None):<34} {_request_text(without)}")
            say(f"   {_policy_text(policy):<34} {_request_text(with_)}")
            after = lab.conntrack_stats()
            invalid = after.get("invalid", 0) - before.get("invalid", 0)
            dropped = lab.invalid_dropped()
            say(
                f"\nnode conntrack: {invalid} packets counted invalid (/proc/net/stat/nf_conntrack, all CPUs), "
                f"{dropped} dropped by `ct state invalid drop`"
            )
            run_id = lab.run_id
    except LabError as exc:
        print(f"keepalive lab: could not build or run the lab: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    # The push scenario is deterministic; the re-balance is random per connection (each failing with probability
    # about 1/2), so only its keepalive side is part of the verdict.
    shown = not push[0].received and push[1].received and all(outcome.stayed for outcome in with_)
    if args.json:
        print(
            json.dumps(
                {
                    "lab": run_id,
                    "conntrack_timeout": timeout,
                    "idle_for": idle_for,
                    "policy": _policy_json(policy),
                    "push": [
                        {
                            "policy": _policy_json(outcome.policy),
                            "received": outcome.received,
                            "latency": outcome.latency,
                            "client_error": outcome.client_error,
                            "server_error": outcome.server_error,
                        }
                        for outcome in push
                    ],
                    "request": [
                        {
                            "policy": _policy_json(outcome.policy),
                            "first_backend": outcome.first_backend,
                            "second_backend": outcome.second_backend,
                            "error": outcome.error,
                        }
                        for outcome in request
                    ],
                    "conntrack_invalid": invalid,
                    "invalid_dropped": dropped,
                    "shown": shown,
                    "seconds": round(elapsed, 2),
                },
                indent=2,
            )
        )
    else:
        verdict = "shown" if shown else "NOT shown (see above)"
        say(f"\nfailure without keepalive and success with it: {verdict}; {elapsed:.1f} s; namespaces deleted")
    return 0 if shown else 1


def _say(*parts: object) -> None:
    print(*parts, flush=True)
