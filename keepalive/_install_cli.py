"""Run a program with keepalive on every TCP connection it and its descendants make, whatever their language.

Sets KEEPALIVE_AUTO=1 (and, with --policy or --path-timeout, the KEEPALIVE_* timings) for COMMAND: every Python
interpreter in its tree that has tcp-keepalive installed calls keepalive.install() at start-up through the
tcp_keepalive_auto.pth hook. On Linux, keepalive run stays COMMAND's parent (a supervisor like tini: signals
forwarded, zombies reaped, COMMAND's exit status passed on, 128+N when signal N killed it) and tightens the
connected TCP sockets of every descendant with pidfd_getfd every KEEPALIVE_SWEEP seconds (default 1; 0: never),
tighten-only. Elsewhere it replaces itself with COMMAND. Without a policy option the process default applies:
the KEEPALIVE_* variables already set, else the checker's path timeout, else the built-in policy.
Exit status: COMMAND's; 2 for a usage error; 127 when COMMAND does not exist, 126 when it cannot run.
"""

from __future__ import annotations

import argparse
import os
import site
import subprocess
import sys
from collections.abc import Mapping
from typing import Final

from keepalive._autostart import ENV_AUTO, PTH_NAME
from keepalive._exceptions import InvalidPolicy
from keepalive._install import ENV_SWEEP, parse_sweep
from keepalive._policy import _ENV_VARS, ENV_PATH_TIMEOUT, Policy, resolve_default_policy

__all__ = ["SUPERVISOR_SWEEP_INTERVAL", "add_arguments", "build_env", "hook_installed", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``keepalive run``."""
    parser.usage = "%(prog)s [-v] [--policy SPEC | --path-timeout SECONDS] -- COMMAND [ARGS...]"
    parser.add_argument(
        "-v",
        "--verbose",
        dest="run_verbose",
        action="store_true",
        help="list on standard error each connection the supervisor reached, and what it changed",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--policy",
        metavar="SPEC",
        help="the keepalive timings: 'idle,interval,count[,user_timeout]' (seconds) or "
        "'idle=60,interval=10,count=5,user_timeout=off'; replaces any KEEPALIVE_* timings in the environment",
    )
    choice.add_argument(
        "--path-timeout",
        metavar="SECONDS",
        type=float,
        help="the shortest idle timeout on the path (e.g. 350 for AWS NAT Gateway): use Policy.below(SECONDS)",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the program to run, after '--' (e.g. -- python app.py)",
    )


def build_env(
    environ: Mapping[str, str], *, policy: Policy | None = None, path_timeout: float | None = None
) -> dict[str, str]:
    """The environment for the program: ``environ`` plus ``KEEPALIVE_AUTO=1`` and the policy's variables.

    An explicit ``policy`` or ``path_timeout`` replaces every inherited ``KEEPALIVE_*`` timing variable, so that
    what the command line says is what the program gets.
    """
    env = dict(environ)
    env[ENV_AUTO] = "1"
    if policy is not None or path_timeout is not None:
        for name in _ENV_VARS:
            env.pop(name, None)
    if policy is not None:
        env.update(policy.to_env())
    elif path_timeout is not None:
        env[ENV_PATH_TIMEOUT] = repr(path_timeout)  # exact: parses back to the same number
    return env


def hook_installed() -> bool:
    """Whether this interpreter's site-packages hold the start-up hook (``tcp_keepalive_auto.pth``)."""
    directories = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return any(os.path.isfile(os.path.join(directory, PTH_NAME)) for directory in directories)


#: Seconds between the supervisor's sweeps of its descendants unless KEEPALIVE_SWEEP says otherwise.
SUPERVISOR_SWEEP_INTERVAL: Final = 1.0


def _sweep_policy(policy: Policy | None, path_timeout: float | None) -> Policy:
    """The policy the supervisor tightens to: the one given, below() the path timeout given, or the default."""
    if policy is not None:
        return policy
    if path_timeout is not None:
        return Policy.below(path_timeout)
    return resolve_default_policy()


def _say(message: str) -> None:
    print(f"keepalive run: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """``keepalive run``: exec COMMAND with the start-up hook switched on."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _say("error: no command given; usage: keepalive run [--policy SPEC] -- python app.py")
        return 2
    policy: Policy | None = None
    try:
        if args.policy is not None:
            policy = Policy.parse(args.policy)
        if args.path_timeout is not None:
            Policy.below(args.path_timeout)  # validate now rather than in the program's start-up
    except InvalidPolicy as exc:
        _say(f"error: {exc}")
        return 2
    verbose = bool(getattr(args, "run_verbose", False) or getattr(args, "verbose", 0))
    supervised = sys.platform.startswith("linux")
    interval = SUPERVISOR_SWEEP_INTERVAL
    if ENV_SWEEP in os.environ:
        try:
            interval = parse_sweep(os.environ[ENV_SWEEP])
        except ValueError as exc:
            _say(f"error: {exc}")
            return 2
    if not hook_installed() and (verbose or not supervised):
        _say(
            f"warning: the start-up hook {PTH_NAME} is not in this interpreter's site-packages "
            f"({sys.prefix}); reinstall tcp-keepalive with pip, or Python programs will not get keepalive at connect"
        )
    env = build_env(os.environ, policy=policy, path_timeout=args.path_timeout)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if supervised:
            from keepalive._supervisor import supervise

            return supervise(
                command,
                env,
                policy=_sweep_policy(policy, args.path_timeout),
                interval=interval,
                verbose=verbose,
                say=_say,
            )
        if os.name == "nt":  # no real exec on Windows: run it and pass its status on
            return subprocess.call(command, env=env)
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        _say(f"error: command not found: {command[0]}")
        return 127
    except PermissionError as exc:
        _say(f"error: cannot run {command[0]}: {exc.strerror}")
        return 126
    except OSError as exc:
        _say(f"error: cannot run {command[0]}: {exc}")
        return 126
