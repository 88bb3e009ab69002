"""The start-up hook behind ``KEEPALIVE_AUTO=1`` and ``keepalive run``.

The wheel installs ``tcp_keepalive_auto.pth`` into site-packages. ``site`` runs its one line at every interpreter
start-up::

    import os; os.environ.get("KEEPALIVE_AUTO") and __import__("keepalive._autostart")

so a process without the variable pays one dictionary lookup. With it, this module runs :func:`main`:
``KEEPALIVE_AUTO`` must be an on word (``1/on/yes/true/enabled``: install) or an off word (``0/off/no/false/
disabled``, or empty: do nothing), the words of :mod:`keepalive._words`. The policy comes
from the ``KEEPALIVE_*`` variables (or the process default); a broken one is reported in one line on standard
error and the built-in policy is installed instead. ``KEEPALIVE_SWEEP`` sets the interval of the sweep that
reaches connections made in C (seconds; 0 off; default 5); a broken value is reported the same way and the
default used. Nothing here raises: the program always starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from keepalive._words import switch

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["ENV_AUTO", "PTH_NAME", "main"]

ENV_AUTO: Final = "KEEPALIVE_AUTO"
#: The file name of the start-up hook in site-packages (sorted after hatchling's editable ``_tcp_keepalive.pth``).
PTH_NAME: Final = "tcp_keepalive_auto.pth"
#: The variables Policy.from_env() reads (keepalive._policy._ENV_VARS, repeated here so that the hook does not import
#: keepalive._policy when none is set; tests/test_install_autostart.py holds the two equal).
POLICY_VARIABLES: Final = (
    "KEEPALIVE_IDLE",
    "KEEPALIVE_INTERVAL",
    "KEEPALIVE_COUNT",
    "KEEPALIVE_USER_TIMEOUT",
    "KEEPALIVE_PATH_TIMEOUT",
)


def _error(message: str) -> None:
    stream = sys.stderr
    if stream is None:  # pythonw, a daemon with stderr closed
        return
    try:
        stream.write(f"keepalive: error: {message}\n")
        stream.flush()
    except Exception:
        pass


def main(environ: Mapping[str, str] | None = None) -> bool:
    """Install process-wide keepalive if ``KEEPALIVE_AUTO`` asks for it. Returns whether it did. Never raises."""
    env = os.environ if environ is None else environ
    try:
        try:
            if not switch(ENV_AUTO, env.get(ENV_AUTO), default=False):
                return False
        except ValueError as exc:
            _error(f"{exc}; process-wide keepalive is not installed")
            return False

        from keepalive._install import DEFAULT_SWEEP_INTERVAL, ENV_SWEEP, install, parse_sweep

        sweep = DEFAULT_SWEEP_INTERVAL
        if ENV_SWEEP in env:
            try:
                sweep = parse_sweep(env[ENV_SWEEP])
            except ValueError as exc:
                _error(f"{exc}; sweeping every {DEFAULT_SWEEP_INTERVAL:g} s instead")
        # Checked now, so that a broken variable is reported at start-up; keepalive._policy is only imported when
        # one of its variables is set (with none set, Policy.from_env() has nothing to read).
        if any(env.get(name, "").strip() for name in POLICY_VARIABLES):
            from keepalive._exceptions import InvalidPolicy
            from keepalive._policy import BUILTIN_POLICY, Policy

            try:
                Policy.from_env(env)
            except InvalidPolicy as exc:
                _error(f"{exc}; {ENV_AUTO} installs the built-in policy ({BUILTIN_POLICY}) instead")
                install(BUILTIN_POLICY, sweep=sweep)
                return True
        # None: the process default, resolved on the first connection (environment, then the checker's path
        # timeout, then the built-in policy), so that the runtime check runs then and not at start-up.
        install(None, sweep=sweep)
        return True
    except Exception as exc:  # a start-up hook must never stop the program
        _error(f"{ENV_AUTO}: process-wide keepalive is not installed: {type(exc).__name__}: {exc}")
        return False


main()  # importing this module is the hook
