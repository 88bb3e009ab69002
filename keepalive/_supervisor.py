"""``keepalive run``'s supervisor: run a program as a child, stay its parent, and tighten its tree's connections.

Like tini and dumb-init: the program runs as our child with the signal mask and dispositions a shell would give
it; every signal we receive is forwarded to it (except those a terminal sent to the whole foreground process
group, which it already got); zombies are reaped, and we exit with its status (``128 + N`` when signal N killed
it, as a shell reports). We become a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) so that a grandchild
whose parent exits is reparented to us and stays in the tree we sweep.

Every ``interval`` seconds the descendants' connected TCP sockets are tightened to the policy with
``pidfd_getfd(2)`` (permitted for one's own descendants under the usual ptrace rules and Yama's default scope;
no root): :func:`keepalive._audit._sweep.tighten_round`, the engine the in-process sweep uses. A process that
cannot be reached is named on standard error, once, with what to do; processes and descriptors that vanish
mid-sweep are skipped without a word.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from keepalive._audit._sweep import Reached, tighten_round
from keepalive._policy import Policy
from keepalive._tighten import describe

__all__ = ["FORWARDED", "descendants", "set_subreaper", "supervise"]

_PR_SET_CHILD_SUBREAPER: Final = 36
_SI_KERNEL: Final = 0x80
#: Signals forwarded to the child. Job-control stops (TSTP, TTIN, TTOU) keep their default action on us.
FORWARDED: Final = frozenset(
    {
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGTERM,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        signal.SIGALRM,
        signal.SIGCONT,
    }
)
#: Python ignores these at start-up; the program gets the default action back, as from a shell.
_RESET: Final = (signal.SIGPIPE, signal.SIGXFSZ)

_Say = Callable[[str], None]


def set_subreaper() -> str | None:
    """Make this process a child subreaper. Returns None, or why it could not."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            return f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(code)}"
    except (OSError, AttributeError) as exc:
        return f"prctl(PR_SET_CHILD_SUBREAPER) is not available: {exc}"
    return None


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children first), from ``/proc/<pid>/task/<tid>/children``.

    Falls back to one walk over ``/proc/*/stat`` when the kernel lacks that file (CONFIG_PROC_CHILDREN).
    """
    found: list[int] = []
    queue = [root]
    try:
        while queue:
            pid = queue.pop(0)
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as children:
                        text = children.read()
                except FileNotFoundError:
                    if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                        continue  # the thread exited
                    raise
                except OSError:
                    continue
                for word in text.split():
                    child = int(word)
                    found.append(child)
                    queue.append(child)
    except FileNotFoundError:
        return _descendants_by_stat(root)
    return found


def _descendants_by_stat(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in parents.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip()
    except OSError:
        return "?"


class _Sweeps:
    """The supervisor's sweep state: inodes already reached, per process, and processes already reported."""

    def __init__(self, policy: Policy, say: _Say, verbose: bool) -> None:
        self.policy = policy
        self.say = say
        self.verbose = verbose
        self.known: dict[int, set[int]] = {}
        self.reported: set[int] = set()
        self.failed = False

    def safe_round(self) -> None:
        """One round; an unexpected error is reported once and the supervision goes on (the child never loses
        its parent to a bug in the sweep)."""
        try:
            self.round()
        except Exception as exc:
            if not self.failed:
                self.failed = True
                self.say(f"a sweep round failed ({type(exc).__name__}: {exc}); supervision continues")

    def round(self) -> None:
        pids = descendants(os.getpid())
        alive = set(pids)
        for gone in [pid for pid in self.known if pid not in alive]:
            del self.known[gone]
        self.reported &= alive
        for pid in pids:
            known = self.known.setdefault(pid, set())
            result = tighten_round(pid, self.policy, known, origin="keepalive run")
            if result.gone:
                self.known.pop(pid, None)
                continue
            if self.verbose:
                for reached in result.reached:
                    self.say(_line(reached))
            if result.unreachable is not None and pid not in self.reported:
                self.reported.add(pid)
                self.say(
                    f"cannot reach the connections of process {pid} ({_name(pid)}): {result.unreachable}; run "
                    "keepalive run as root or with CAP_SYS_PTRACE, allow pidfd_getfd in the container's seccomp "
                    "profile, or set keepalive in that program's own client options"
                )


def _line(reached: Reached) -> str:
    result = reached.result
    where = f"process {reached.pid} ({_name(reached.pid)}) fd {reached.fd} {reached.local} -> {reached.remote}"
    if result.error is not None:
        return f"could not tighten {where}: {result.error}"
    if not result.changed:
        return f"reached {where}: keepalive {describe(result.before)}, already within the policy"
    return f"reached {where}: keepalive {describe(result.before)} -> {describe(result.after)}"


def supervise(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    policy: Policy,
    interval: float,
    verbose: bool,
    say: _Say,
) -> int:
    """Run ``command`` as our child until it exits; return the exit status a shell would report.

    Raises FileNotFoundError (127) or PermissionError / other OSError (126) when the command cannot start.
    ``interval`` is the time between sweeps (0: no sweep, only supervision).
    """
    if interval > 0:
        why = _sweep_unavailable()
        if why is not None:
            say(f"{why}: the connections of non-Python programs are not reached; Python ones still are")
            interval = 0
    problem = set_subreaper()
    if problem is not None and interval > 0:
        say(f"{problem}: descendants whose parent exits leave the tree and are not swept")
    waited = set(FORWARDED) | {signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        child = os.posix_spawnp(command[0], list(command), dict(env), setsigmask=old_mask, setsigdef=_RESET)
        sweeps = _Sweeps(policy, say, verbose) if interval > 0 else None
        return _wait(child, waited, sweeps, interval)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _wait(child: int, waited: set[signal.Signals], sweeps: _Sweeps | None, interval: float) -> int:
    while True:
        info = signal.sigtimedwait(waited, interval if sweeps is not None else 3600.0)
        if info is None:
            if sweeps is not None:
                sweeps.safe_round()
            continue
        if info.si_signo == signal.SIGCHLD:
            status = _reap(child)
            if status is not None:
                return status
            continue
        if info.si_code == _SI_KERNEL and _same_group(child):
            continue  # a terminal's signal to the foreground group: the child got it too
        try:
            os.kill(child, info.si_signo)
        except ProcessLookupError:
            pass


def _same_group(child: int) -> bool:
    try:
        return os.getpgid(child) == os.getpgrp()
    except OSError:
        return False


def _reap(child: int) -> int | None:
    """Reap every exited child (orphans included); the shell-style status once ``child`` has exited."""
    status: int | None = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == child:
            code = os.waitstatus_to_exitcode(raw)
            status = 128 - code if code < 0 else code
    return status


def _sweep_unavailable() -> str | None:
    """Why pidfd_getfd cannot work here at all, or None."""
    from keepalive._audit._access import _PIDFD_GETFD_ARCHES

    if not sys.platform.startswith("linux"):
        return f"pidfd_getfd is Linux only (this is {sys.platform})"
    if not hasattr(os, "pidfd_open"):
        return "this Python has no os.pidfd_open"
    if os.uname().machine not in _PIDFD_GETFD_ARCHES:
        return f"pidfd_getfd is not known on this architecture ({os.uname().machine})"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return "pidfd_open is not implemented by this kernel (needs Linux 5.3+, pidfd_getfd 5.6+)"
        return f"pidfd_open failed: {exc.strerror}"
    return None
