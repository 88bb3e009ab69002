"""What a look at the path concludes: :class:`Severity` and :class:`Finding` (shared by the model and the checker)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from keepalive._path._source import plain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Finding", "Severity"]


class Severity(enum.StrEnum):
    """How much a finding matters. Ordered: ``ok < info < warning < error`` (compare with :attr:`rank`)."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """0 for ok, 1 info, 2 warning, 3 error."""
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """The ``keepalive check`` exit code for a report whose worst finding has this severity."""
        return max(0, self.rank - 1)


_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3}


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class Finding:
    """One conclusion of the check.

    Attributes:
        severity: ok, info, warning or error.
        code: a stable identifier (``policy-idle-exceeds-path-timeout``, ...), listed in the checker docs.
        message: what was found, with the numbers.
        fix: what to change: the exact sysctl, kube-proxy flag or policy; ``""`` when nothing needs doing.
        data: the numbers of the message, by name (also logged in ``extra`` by the runtime check).
    """

    severity: Severity
    code: str
    message: str
    fix: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "data", _frozen(self.data))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: severity, code, message, fix, data."""
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "data": {name: plain(value) for name, value in self.data.items()},
        }
