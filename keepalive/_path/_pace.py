"""Pacing for work done beside an event loop: a thread that gives the GIL back between short steps.

A thread that imports modules and parses files holds the GIL for up to the switch interval (5 ms) at a time, and
an event loop in the same process waits that long for each turn. Work that runs beside a loop -- the runtime
check -- marks its thread with :func:`set_paced`; the path model and the checker call :func:`pause` between steps
(each import, each file read, each few dozen processes scanned), which sleeps briefly in a paced thread, so the
loop gets the GIL within one short step instead of one switch interval. Anywhere else :func:`pause` does nothing,
so the CLI and :func:`keepalive.check` run at full speed. The switch interval itself is never changed: that
belongs to the application.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["PAUSE", "pause", "set_paced"]

#: How long a paced thread sleeps at each :func:`pause`: long enough for a waiting loop to take the GIL and run
#: a turn, short enough that the whole check still ends within a few tens of milliseconds.
PAUSE: Final = 0.0005

_state = threading.local()


def pause() -> None:
    """Sleep :data:`PAUSE` seconds (giving the GIL away) when this thread is paced; otherwise return at once."""
    if getattr(_state, "paced", False):
        time.sleep(PAUSE)


def set_paced(on: bool) -> bool:
    """Make :func:`pause` sleep (``on``) or not in this thread; returns the previous setting, to restore it."""
    before = bool(getattr(_state, "paced", False))
    _state.paced = on
    return before
