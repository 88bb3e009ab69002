"""Logger names: ``keepalive`` with one child per area (``keepalive.socket``, ``keepalive.check``, ...).

``logging`` costs about 10 ms to import (it pulls in ``traceback``, ``re``, ``string``, ``weakref``,
``threading``), more than the rest of what ``KEEPALIVE_AUTO=1`` loads at start-up, and a process that never
configures logging should not pay for it. So, while ``logging`` is not imported, :func:`get_logger` returns a
stand-in:

* a logging call (``debug`` ... ``critical``, ``log``) while ``logging`` is still not imported does nothing: no
  one can have configured a handler or a level, and the package logger's NullHandler would swallow the record
  anyway (keepalive never prints through logging's last resort), so the real logger would discard it too;
* once anything has imported ``logging``, the stand-in's first use gets the real logger, gives the package logger
  its :class:`logging.NullHandler` (:func:`attach_null_handler`) and from then on every attribute is the real
  logger's (the hot methods are copied onto the stand-in, so a call costs what it costs on the real one).

``import keepalive`` attaches the NullHandler at once when ``logging`` is already loaded.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

ROOT = "keepalive"

#: The methods a keepalive module calls; copied onto the stand-in after the first use, so a call costs what a
#: call on the real logger costs.
_HOT = ("debug", "info", "warning", "error", "exception", "critical", "log")


def attach_null_handler() -> None:
    """Give the package logger a NullHandler (once), so a library never prints through logging's last resort."""
    import logging

    logger = logging.getLogger(ROOT)
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


class _LazyLogger:
    """Stands for ``logging.getLogger(name)``; imports ``logging`` on the first attribute read."""

    __slots__ = ("__dict__", "_name")

    def __init__(self, name: str) -> None:
        self._name = name

    def _logger(self) -> logging.Logger:
        import logging

        attach_null_handler()
        logger = logging.getLogger(self._name)
        for attr in _HOT:
            self.__dict__[attr] = getattr(logger, attr)
        return logger

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._logger(), attr)

    def _emit(self, method: str, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        if "logging" not in sys.modules:
            return  # nothing can receive it: see the module's docstring
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2  # the caller, not this stand-in
        getattr(self._logger(), method)(msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit("debug", msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit("info", msg, args, kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit("warning", msg, args, kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit("error", msg, args, kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._emit("error", msg, args, kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit("critical", msg, args, kwargs)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if "logging" not in sys.modules:
            return
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        self._logger().log(level, msg, *args, **kwargs)

    def __repr__(self) -> str:
        if "logging" in sys.modules:
            return repr(self._logger())
        return f"<keepalive logger {self._name} (logging not imported yet)>"


def get_logger(area: str) -> logging.Logger:
    """Return the logger ``keepalive.<area>`` (a stand-in until first used: see the module's docstring)."""
    name = f"{ROOT}.{area}"
    if "logging" in sys.modules:
        attach_null_handler()
        return sys.modules["logging"].getLogger(name)  # type: ignore[no-any-return]
    return _LazyLogger(name)  # type: ignore[return-value]
