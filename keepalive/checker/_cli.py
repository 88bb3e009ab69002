"""Check this node's idle timeouts (conntrack, kube-proxy, IPVS, cloud NAT/LB presets) against the keepalive
policy the process would use, and say exactly what to change. Exit code: 0 ok, 1 warnings, 2 errors."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from keepalive._exceptions import InvalidPolicy
from keepalive._log import get_logger
from keepalive._path._kubeproxy import ENV_KUBE_PROXY_CONFIG, NotLoopback, loopback_url
from keepalive._path._middleboxes import MIDDLEBOX_NOTES, MIDDLEBOXES, parse_middleboxes
from keepalive._path._proc import ENV_PROC_ROOT, proc_root_problem
from keepalive._policy import Policy
from keepalive.checker._check import MAX_SAMPLE, parse_path_timeout, run_check
from keepalive.checker._report import Report

__all__ = ["add_arguments", "run"]

log = get_logger("check")

FORMATS = ("text", "json", "prometheus")


def _sample(text: str) -> float:
    value, reason = parse_path_timeout(text) if text.strip() not in {"0", "0s"} else (0.0, None)
    if value is None or value > MAX_SAMPLE:
        raise argparse.ArgumentTypeError(reason or f"at most {MAX_SAMPLE:g} seconds, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value, reason = parse_path_timeout(text)
    if value is None:
        raise argparse.ArgumentTypeError(reason or "expected seconds")
    return value


def _policy(text: str) -> Policy:
    try:
        return Policy.parse(text)
    except InvalidPolicy as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _middleboxes(text: str) -> list[str]:
    known, unknown = parse_middleboxes(text)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown middlebox {', '.join(map(repr, unknown))}; known: {', '.join(MIDDLEBOXES)} "
            "(use --path-timeout SECONDS for anything else; --list-middleboxes describes them)"
        )
    if not known:
        raise argparse.ArgumentTypeError("expected NAME[,NAME]")
    return known


def _config_file(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path: give kube-proxy's configuration file, or leave the flag out")
    return text


def _proc_root(text: str) -> str:
    problem = proc_root_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def _url(text: str) -> str:
    try:
        loopback_url(text)
    except NotLoopback as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keepalive check`` flags."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "environment: KEEPALIVE_PROC_ROOT, KEEPALIVE_MIDDLEBOX, KEEPALIVE_PATH_TIMEOUT, "
        "KEEPALIVE_KUBE_PROXY_CONFIG (flags win); KEEPALIVE_IDLE/_INTERVAL/_COUNT/_USER_TIMEOUT set the policy checked."
    )
    parser.add_argument(
        "--proc-root",
        metavar="DIR",
        type=_proc_root,
        help=f"where proc is mounted (default ${ENV_PROC_ROOT} or /proc; e.g. /host/proc for a hostPath mount)",
    )
    parser.add_argument(
        "--sample",
        metavar="SECONDS",
        type=_sample,
        default=0.0,
        help="read the conntrack counters twice, SECONDS apart, and report rates (default: one read)",
    )
    parser.add_argument(
        "--kube-proxy-config",
        metavar="FILE",
        type=_config_file,
        help=f"kube-proxy's KubeProxyConfiguration, JSON or YAML (YAML needs tcp-keepalive[yaml]); "
        f"default ${ENV_KUBE_PROXY_CONFIG}",
    )
    parser.add_argument(
        "--kube-proxy-url",
        metavar="URL",
        type=_url,
        help="kube-proxy's /configz on loopback, e.g. http://127.0.0.1:10249/configz (other hosts are refused)",
    )
    parser.add_argument(
        "--middlebox",
        metavar="NAME[,NAME]",
        type=_middleboxes,
        action="append",
        help="middleboxes on the path, by preset name (repeatable; --list-middleboxes); default $KEEPALIVE_MIDDLEBOX",
    )
    parser.add_argument(
        "--path-timeout",
        metavar="SECONDS",
        type=_seconds,
        help="another idle timeout on the path, in seconds; default $KEEPALIVE_PATH_TIMEOUT",
    )
    parser.add_argument(
        "--policy",
        metavar="IDLE,INTERVAL,COUNT",
        type=_policy,
        help="the policy to check (default: the one this process would use, KEEPALIVE_* variables apply)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (same as --format json)")
    parser.add_argument("--format", choices=FORMATS, help="text (default), json, or prometheus textfile metrics")
    parser.add_argument(
        "--textfile",
        metavar="PATH",
        help="also write the Prometheus metrics to PATH atomically (node_exporter textfile collector, *.prom)",
    )
    parser.add_argument(
        "--every",
        metavar="SECONDS",
        type=_seconds,
        help="repeat the check every SECONDS until stopped (for a DaemonSet); logs each round to stderr",
    )
    parser.add_argument(
        "--list-middleboxes", action="store_true", help="print the middlebox presets and their timeouts, then exit"
    )


def _render(report: Report, fmt: str, *, one_line: bool = False) -> str:
    if fmt == "json":
        return report.to_json(indent=None if one_line else 2) + "\n"
    if fmt == "prometheus":
        return report.to_prometheus()
    return report.to_text()


def _round(args: argparse.Namespace, fmt: str) -> int:
    middleboxes = None
    if args.middlebox:
        middleboxes = [name for group in args.middlebox for name in group]
    report = run_check(
        policy=args.policy,
        policy_origin="--policy",
        proc_root=args.proc_root,
        middleboxes=middleboxes,
        middlebox_origin="--middlebox",
        path_timeout=args.path_timeout,
        path_timeout_origin="--path-timeout",
        kube_proxy_config=args.kube_proxy_config,
        kube_proxy_url=args.kube_proxy_url,
        sample=args.sample,
    )
    sys.stdout.write(_render(report, fmt, one_line=bool(args.every)))  # --every --json: one JSON object a line
    sys.stdout.flush()
    code = report.exit_code
    if args.textfile:
        try:
            report.write_textfile(args.textfile)
        except OSError as exc:
            print(f"keepalive check: cannot write --textfile {args.textfile}: {exc}", file=sys.stderr)
            code = 2
    if args.every:
        counts = {s: len(report.by_severity(s)) for s in ("error", "warning", "info")}
        timeout = "unknown" if report.path_timeout is None else f"{report.path_timeout:g} s"
        log.info(
            "keepalive check round: status %s, path timeout %s, %d error(s), %d warning(s), %d info",
            report.severity.value,
            timeout,
            counts["error"],
            counts["warning"],
            counts["info"],
            extra={
                "keepalive_status": report.severity.value,
                "keepalive_exit_code": code,
                "keepalive_path_timeout": report.path_timeout,
            },
        )
    return code


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Run ``keepalive check``; the exit code is 0 ok, 1 warnings, 2 errors (--every: runs until stopped)."""
    if args.list_middleboxes:
        width = max(map(len, MIDDLEBOXES))
        for name, timeout in MIDDLEBOXES.items():
            print(f"{name:<{width}}  {timeout:>6} s  {MIDDLEBOX_NOTES[name]}")
        return 0
    fmt = args.format or ("json" if args.json else "text")
    if args.json and args.format not in {None, "json"}:
        print(f"keepalive check: --json conflicts with --format {args.format}", file=sys.stderr)
        return 2
    if not args.every:
        try:
            return _round(args, fmt)
        except (ValueError, TypeError) as exc:
            print(f"keepalive check: {exc}", file=sys.stderr)
            return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    stop = threading.Event()
    rounds = 0
    with _stop_on_sigterm(stop):
        while not stop.is_set():
            rounds += 1
            try:
                _round(args, fmt)
            except Exception:
                log.exception("keepalive check round %d failed; trying again in %g s", rounds, args.every)
            if stop.wait(args.every if math.isfinite(args.every) else None):
                break
    log.info("keepalive check stopped after %d round(s)", rounds)
    return 0
