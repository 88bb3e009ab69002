"""Print the policy this process would use, where it comes from (the path model's evidence and the rule that
turned it into a policy), and what this platform can set."""

from __future__ import annotations

import argparse
import json

from keepalive._exceptions import InvalidPolicy
from keepalive._path._model import PathModel, gather
from keepalive._platform import CURRENT, compile_plan
from keepalive._policy import Policy, explain_default_policy

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``keepalive policy [--policy SPEC | --below SECONDS] [--json]``."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--policy", metavar="IDLE,INTERVAL,COUNT", help="show this policy instead of the default")
    choice.add_argument(
        "--below", metavar="SECONDS", type=float, help="show Policy.below(SECONDS) for a path idle timeout"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Print the policy; exit 2 when the environment or the arguments are invalid."""
    model: PathModel | None = None
    try:
        if args.policy:
            policy, source = Policy.parse(args.policy), "--policy"
        elif args.below is not None:
            policy, source = Policy.below(args.below), f"Policy.below({args.below:g})"
        else:
            policy, source = explain_default_policy()
            model = gather()  # the evidence the default came from (the environment and this node)
    except InvalidPolicy as exc:
        print(f"keepalive: {exc}")
        return 2
    plan = compile_plan(policy, CURRENT)
    supported = CURRENT.supported()
    if args.json:
        print(
            json.dumps(
                {
                    "policy": policy.to_dict(),
                    "source": source,
                    "path": None if model is None else model.to_dict(),
                    "env": policy.to_env(),
                    "platform": CURRENT.name,
                    "supported": supported,
                    "setsockopt": [
                        {"option": name, "level": level, "optname": optname, "value": value}
                        for name, level, optname, value in plan.calls
                    ],
                    "unsupported": list(plan.success.unsupported),
                },
                indent=2,
            )
        )
        return 0
    print(f"policy:    {policy}")
    print(f"source:    {source}")
    if model is not None:
        if model.path_timeout is None:
            print("path:      no idle timeout known (KEEPALIVE_PATH_TIMEOUT / KEEPALIVE_MIDDLEBOX name one)")
        else:
            print(f"path:      {model.path_timeout:g} s, the minimum over:")
            for item in model.evidence:
                print(f"  {item.timeout:>8g} s  {item.kind:<8}  {item.label}")
    print(f"detection: a silent peer is noticed after about {policy.detection_time:g} s")
    print(f"platform:  {CURRENT.name}")
    for name, ok in supported.items():
        print(f"  {name:<18} {'yes' if ok else 'no'}")
    print("setsockopt calls:")
    for name, level, optname, value in plan.calls:
        print(f"  setsockopt({level}, {optname}, {value})  # {name}")
    if plan.ioctl is not None:
        print(f"  ioctl({plan.ioctl[0]:#x}, {plan.ioctl[1]})  # SIO_KEEPALIVE_VALS")
    if plan.success.unsupported:
        print(f"not available here: {', '.join(plan.success.unsupported)}")
    print("as environment variables:")
    for key, text in policy.to_env().items():
        print(f"  {key}={text}")
    return 0
