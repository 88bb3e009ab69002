"""The checker's values: :class:`Severity`, :class:`Source` (a value and where it came from), :class:`Finding`.

They live in the core (:mod:`keepalive._path`), which the default policy shares; re-exported here.
"""

from __future__ import annotations

from keepalive._path._finding import Finding, Severity
from keepalive._path._source import Number, Source, plain

__all__ = ["Finding", "Number", "Severity", "Source", "plain"]
