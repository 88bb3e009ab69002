"""Frozen, slotted value classes that look like dataclasses without importing :mod:`dataclasses` at start-up.

``import dataclasses`` pulls in ``inspect``, ``ast`` and ``dis``: most of what ``import keepalive`` used to cost.
:class:`Value` gives the behaviour of ``@dataclass(frozen=True, slots=True)`` (keyword construction by the
subclass's ``__init__``, ``repr``, ``==``, ``hash``, ``__match_args__``, pickle and copy) by hand, and keeps the
:mod:`dataclasses` functions working: ``__dataclass_fields__`` is computed on first access (which imports
:mod:`dataclasses` then) from an equivalent dataclass, so ``dataclasses.fields()``, ``asdict()``, ``astuple()``,
``replace()`` and ``is_dataclass()`` behave as for the real thing. Slots that are not in ``_fields`` (caches) are
invisible to all of them.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import Field
    from typing import Any, ClassVar, NoReturn

__all__ = ["Value"]


class _LazyDataclassFields:
    """``__dataclass_fields__`` of a :class:`Value` subclass, built on first access and then stored on the class."""

    def __get__(self, instance: object, owner: type[Value]) -> dict[str, Field[Any]]:
        import dataclasses

        specs = [(name, annotation, dataclasses.field(kw_only=True)) for name, annotation in owner._field_types.items()]
        twin = dataclasses.make_dataclass(owner.__name__, specs, frozen=True, eq=True)
        fields: dict[str, Field[Any]] = twin.__dataclass_fields__  # type: ignore[attr-defined]
        type.__setattr__(owner, "__dataclass_fields__", fields)
        return fields


def _rebuild(cls: type[Value], values: dict[str, Any]) -> Value:
    return cls(**values)


class Value:
    """Base of frozen value classes: subclasses set ``__slots__``, ``_field_types`` (field name -> type, in
    order) and a keyword ``__init__`` that validates and stores each field with ``object.__setattr__``;
    ``_fields`` and ``__match_args__`` follow from ``_field_types``."""

    __slots__ = ()
    #: The public fields, in order: what repr, ==, hash, pickle and the dataclasses functions see.
    _fields: ClassVar[tuple[str, ...]] = ()
    #: Field name -> type (as text), for ``dataclasses.fields()``.
    _field_types: ClassVar[dict[str, str]] = {}
    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    else:
        __dataclass_fields__ = _LazyDataclassFields()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_field_types" in cls.__dict__:
            cls._fields = tuple(cls._field_types)
            type.__setattr__(cls, "__match_args__", cls._fields)  # positional patterns: case Policy(60, 10)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {name: getattr(self, name) for name in self._fields}))

    def __copy__(self) -> Value:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Value:
        return self
