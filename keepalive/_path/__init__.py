"""The path model and its inputs: what can be read about the path's idle timeouts, each value with its provenance.

Core code (standard library only, no import of :mod:`keepalive.checker`): the default policy, the checker, the
runtime check and the audit all build on it. Modules: ``_model`` (evidence -> one path timeout, and
:func:`judge`), ``_source`` (:class:`Source`, a value and where it came from), ``_finding`` (:class:`Finding`),
``_parse`` (pure text parsers), ``_proc`` (sysctls, conntrack statistics, namespace detection under a proc root),
``_kubeproxy`` (kube-proxy's configuration), ``_middleboxes`` (presets of well-known middleboxes).

The names below load their module on first use, so importing one reader does not load the others.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from keepalive._path._model import Evidence, Fit, PathModel, gather, judge

__all__ = ["Evidence", "Fit", "PathModel", "gather", "judge"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("keepalive._path._model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
