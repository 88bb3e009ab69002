"""A value read from somewhere, with its provenance: :class:`Source` (shared by the path model and the checker)."""

from __future__ import annotations

from keepalive._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

__all__ = ["Number", "Source", "plain"]

Number = int | float


def plain(value: Any) -> Any:
    """A whole float as an int (``350.0 -> 350``) for JSON and text; anything else unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class Source(Value):
    """One value the checker looked at, and where it came from.

    Attributes:
        name: what it is, e.g. ``net.netfilter.nf_conntrack_tcp_timeout_established``,
            ``kube-proxy conntrack.tcpEstablishedTimeout``, ``middlebox aws-nat-gateway``.
        value: the value (seconds for timeouts), or None when it is unknown.
        origin: where it came from: a file, a URL, a flag or an environment variable.
        unit: ``"s"`` for seconds, ``"entries"``, ``"packets"``, ... or ``""``.
        reason: why the value is unknown (missing file, permission denied, garbage, ...); None when known.
        note: a caveat, e.g. that the value belongs to this pod's network namespace, not to the node.
        limits_path: True when the value is one of the path's idle timeouts (the smallest one is the path timeout).
    """

    __slots__ = ("limits_path", "name", "note", "origin", "reason", "unit", "value")
    _field_types: ClassVar[dict[str, str]] = {
        "name": "str",
        "value": "int | float | str | bool | None",
        "origin": "str",
        "unit": "str",
        "reason": "str | None",
        "note": "str | None",
        "limits_path": "bool",
    }

    name: str
    value: Number | str | bool | None
    origin: str
    unit: str
    reason: str | None
    note: str | None
    limits_path: bool

    def __init__(  # noqa: PLR0917 -- positional like the dataclass it replaces
        self,
        name: str,
        value: Number | str | bool | None,
        origin: str,
        unit: str = "",
        reason: str | None = None,
        note: str | None = None,
        limits_path: bool = False,
    ) -> None:
        # Not a dataclass: the default policy builds Sources on the caller's thread (maybe an event loop's), where
        # importing dataclasses (inspect, ast, dis) would stall it; keepalive._value keeps dataclasses.* working.
        for field, field_value in (
            ("name", name),
            ("value", value),
            ("origin", origin),
            ("unit", unit),
            ("reason", reason),
            ("note", note),
            ("limits_path", limits_path),
        ):
            object.__setattr__(self, field, field_value)

    @property
    def known(self) -> bool:
        """True when the value was read."""
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "origin": self.origin,
            "reason": self.reason,
            "note": self.note,
            "limits_path": self.limits_path,
        }
