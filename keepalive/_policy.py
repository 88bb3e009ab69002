"""The keepalive policy: a frozen value, its derivation from a path timeout, and the process default.

Formula of :meth:`Policy.below` for a path idle timeout ``T`` (seconds, ``T >= 3``)::

    budget   = floor(0.75 * T)                 # 25 % margin, at least 2 s below T for T >= 8
    interval = clamp(budget // 8, 1, 30)
    idle     = min(300, budget - interval)
    count    = 5
    user_timeout = idle + interval * count     # the time to declare a silent peer dead

so ``idle + interval <= budget < T``: if the first probe is lost, the second one still refreshes the middlebox
before it forgets the connection. ``idle`` is capped at 300 s so that a path with a huge timeout (conntrack's
432000 s) still detects a dead peer within ``300 + 30 * 5 = 450`` s.
"""

from __future__ import annotations

import _thread
import math
import os
from collections.abc import Mapping

from keepalive._exceptions import InvalidPolicy
from keepalive._log import get_logger
from keepalive._value import Value
from keepalive._words import is_keep, is_off

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Final

__all__ = [
    "BUILTIN_POLICY",
    "ENV_COUNT",
    "ENV_IDLE",
    "ENV_INTERVAL",
    "ENV_PATH_TIMEOUT",
    "ENV_USER_TIMEOUT",
    "Policy",
    "default_policy",
    "explain_default_policy",
    "reset_default_policy",
    "resolve_default_policy",
]

log = get_logger("policy")

#: Linux's limits (``man 7 tcp``); the strictest of the supported platforms, so a valid policy is valid everywhere.
IDLE_RANGE: Final = (1, 32767)
INTERVAL_RANGE: Final = (1, 32767)
COUNT_RANGE: Final = (1, 127)
#: TCP_USER_TIMEOUT is an unsigned int of milliseconds; Linux rejects values above INT_MAX.
USER_TIMEOUT_MAX: Final = (2**31 - 1) / 1000

#: Parameters of :meth:`Policy.below`.
BELOW_MARGIN: Final = 0.75
BELOW_IDLE_CAP: Final = 300
BELOW_INTERVAL_CAP: Final = 30
BELOW_COUNT: Final = 5
BELOW_MIN_TIMEOUT: Final = 3

ENV_IDLE: Final = "KEEPALIVE_IDLE"
ENV_INTERVAL: Final = "KEEPALIVE_INTERVAL"
ENV_COUNT: Final = "KEEPALIVE_COUNT"
ENV_USER_TIMEOUT: Final = "KEEPALIVE_USER_TIMEOUT"
ENV_PATH_TIMEOUT: Final = "KEEPALIVE_PATH_TIMEOUT"
_ENV_VARS: Final = (ENV_IDLE, ENV_INTERVAL, ENV_COUNT, ENV_USER_TIMEOUT, ENV_PATH_TIMEOUT)


class _Derived:
    """Marker default of ``Policy.user_timeout``: derive it as ``idle + interval * count``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "idle + interval * count"


_DERIVED: Any = _Derived()


def _whole(name: str, value: object, bounds: tuple[int, int], unit: str) -> int:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPolicy(f"{name} must be a whole number of {unit} in {lo}..{hi}, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidPolicy(f"{name} must be a whole number of {unit} in {lo}..{hi}, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise InvalidPolicy(f"{name} must be in {lo}..{hi} {unit}, got {value!r}")
    return value


def _user_timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPolicy(
            f"{name} must be a number of seconds in 0..{USER_TIMEOUT_MAX!r} (0 = off) or None (keep), got {value!r}"
        )
    if not math.isfinite(value) or not 0 <= value <= USER_TIMEOUT_MAX:
        raise InvalidPolicy(f"{name} must be in 0..{USER_TIMEOUT_MAX!r} seconds (0 = off), got {value!r}")
    if 0 < value < 0.001:
        raise InvalidPolicy(f"{name} must be 0 or at least 0.001 seconds (1 ms), got {value!r}")
    return value


def _user_timeout_text(name: str, text: str) -> float | None:
    """A user timeout written as text: a keep word -> None, an off word -> 0, else seconds (see keepalive._words)."""
    if is_keep(text):
        return None
    if is_off(text):
        return 0
    return _user_timeout(name, _env_number(name, text))


def _seconds(value: float) -> str:
    """``value`` as text that parses back to exactly the same number: ``60``, ``1234.5678``, ``2147483.647``."""
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else repr(value)


class Policy(Value):
    """Per-connection TCP keepalive settings.

    Args:
        idle: seconds of silence before the first probe (TCP_KEEPIDLE; TCP_KEEPALIVE on macOS), 1..32767.
        interval: seconds between unanswered probes (TCP_KEEPINTVL), 1..32767.
        count: unanswered probes before the connection is dropped (TCP_KEEPCNT), 1..127.
        user_timeout: TCP_USER_TIMEOUT in seconds: how long sent data may stay unacknowledged (and, on Linux,
            how long keepalive may go unanswered) before the connection is dropped. Defaults to
            ``idle + interval * count`` (at most 2147483 s); ``0`` turns TCP_USER_TIMEOUT off (the kernel's
            default); ``None`` leaves the socket's own value. As text (environment, ``--policy``): ``off`` = 0,
            ``keep`` = None (:mod:`keepalive._words`).

    Frozen, slotted, keyword-only, hashable and comparable, with a repr that evaluates back to an equal policy.
    It works with :mod:`dataclasses` (``fields``, ``asdict``, ``replace``, ``is_dataclass``) although it is not
    built by it (that import is expensive, and this class is imported by ``import keepalive``).
    ``dataclasses.replace(policy, idle=30)`` copies every other field as it is, ``user_timeout`` included;
    :meth:`replace` re-derives a derived ``user_timeout``.

    Raises:
        InvalidPolicy: a value is out of range; the message names the field, the value and the range.

    >>> Policy(idle=60, interval=10, count=5)
    Policy(idle=60, interval=10, count=5, user_timeout=110)
    """

    __slots__ = ("_plan", "count", "idle", "interval", "user_timeout")
    _field_types: ClassVar[dict[str, str]] = {
        "idle": "int",
        "interval": "int",
        "count": "int",
        "user_timeout": "float | None",
    }

    idle: int
    interval: int
    count: int
    user_timeout: float | None
    #: The platform's setsockopt plan, compiled on first apply() (keepalive._socket); not a field.
    _plan: Any

    def __init__(
        self,
        *,
        idle: int = 60,
        interval: int = 10,
        count: int = 5,
        user_timeout: float | None = _DERIVED,
    ) -> None:
        idle = _whole("idle", idle, IDLE_RANGE, "seconds")
        interval = _whole("interval", interval, INTERVAL_RANGE, "seconds")
        count = _whole("count", count, COUNT_RANGE, "probes")
        if user_timeout is _DERIVED:
            # Capped at the kernel's limit (INT_MAX ms, about 24.8 days) for the most extreme policies.
            user_timeout = min(idle + interval * count, math.floor(USER_TIMEOUT_MAX))
        else:
            user_timeout = _user_timeout("user_timeout", user_timeout)
        object.__setattr__(self, "idle", idle)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "user_timeout", user_timeout)
        object.__setattr__(self, "_plan", None)

    @property
    def user_timeout_ms(self) -> int | None:
        """TCP_USER_TIMEOUT in milliseconds, as the kernel takes it, or None."""
        if self.user_timeout is None:
            return None
        return round(self.user_timeout * 1000)

    @property
    def detection_time(self) -> float:
        """Worst-case seconds for Linux to drop an idle connection whose peer went silent.

        Without a user timeout (``0`` or ``None``): ``idle + interval * count``. With one, Linux ignores
        TCP_KEEPCNT: at each keepalive timer (``idle``, ``idle + interval``, ...) it aborts once the silence has
        lasted ``user_timeout`` and at least one probe went unanswered, so the answer is the first
        ``idle + k * interval`` (``k >= 1``) that is at least ``user_timeout`` — longer than
        ``idle + interval * count`` when ``user_timeout`` is (net/ipv4/tcp_timer.c, ``tcp_keepalive_timer``).
        Platforms without TCP_USER_TIMEOUT use ``idle + interval * count``.
        """
        if not self.user_timeout:
            return self.idle + self.interval * self.count
        probes = max(1, math.ceil((self.user_timeout - self.idle) / self.interval))
        return self.idle + self.interval * probes

    def replace(self, **changes: Any) -> Policy:
        """A copy with some fields changed; ``user_timeout`` is re-derived unless given or set to None."""
        fields: dict[str, Any] = {"idle": self.idle, "interval": self.interval, "count": self.count}
        derived = self.user_timeout == min(self.idle + self.interval * self.count, math.floor(USER_TIMEOUT_MAX))
        if not derived:
            fields["user_timeout"] = self.user_timeout
        fields.update(changes)
        return Policy(**fields)

    @classmethod
    def below(cls, timeout: float) -> Policy:
        """The policy for a path that forgets a connection after ``timeout`` idle seconds.

        Even if one probe is lost, the next reaches the middlebox in time: ``idle + interval <=
        floor(0.75 * timeout)``. ``idle`` is capped at 300 s, ``interval`` at 30 s, ``count`` is 5. Works for any
        ``timeout >= 3`` seconds (a conntrack established timeout, AWS NAT Gateway's 350, IPVS's 900, ...).

        >>> Policy.below(350)
        Policy(idle=232, interval=30, count=5, user_timeout=382)
        >>> Policy.below(3)
        Policy(idle=1, interval=1, count=5, user_timeout=6)
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise InvalidPolicy(f"timeout must be a finite number of seconds >= {BELOW_MIN_TIMEOUT}, got {timeout!r}")
        if timeout < BELOW_MIN_TIMEOUT:
            raise InvalidPolicy(
                f"timeout must be >= {BELOW_MIN_TIMEOUT} seconds (keepalive works in whole seconds: "
                f"idle 1 + interval 1 must stay below it), got {timeout!r}"
            )
        budget = max(2, math.floor(timeout * BELOW_MARGIN))
        interval = min(BELOW_INTERVAL_CAP, max(1, budget // 8))
        idle = min(BELOW_IDLE_CAP, budget - interval)
        return cls(idle=idle, interval=interval, count=BELOW_COUNT)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy | None:
        """The policy set by environment variables, or None when none of them is set.

        ``KEEPALIVE_IDLE``, ``KEEPALIVE_INTERVAL``, ``KEEPALIVE_COUNT`` (whole seconds / probes),
        ``KEEPALIVE_USER_TIMEOUT`` (seconds; ``off`` or ``0`` turns it off; ``keep`` leaves the socket's own) and
        ``KEEPALIVE_PATH_TIMEOUT``
        (seconds: start from :meth:`below` of it). Fields not given come from ``below(KEEPALIVE_PATH_TIMEOUT)``
        when that is set, else from :data:`BUILTIN_POLICY`. Empty values count as unset.

        Raises:
            InvalidPolicy: a value is malformed or out of range; the message names the variable and its value.
        """
        env = os.environ if environ is None else environ
        raw = {name: env[name].strip() for name in _ENV_VARS if env.get(name, "").strip()}
        if not raw:
            return None
        base = BUILTIN_POLICY
        path_timeout: float | None = None
        if ENV_PATH_TIMEOUT in raw:
            path_timeout = _env_number(ENV_PATH_TIMEOUT, raw[ENV_PATH_TIMEOUT])
            try:
                base = cls.below(path_timeout)
            except InvalidPolicy as exc:
                raise InvalidPolicy(f"{ENV_PATH_TIMEOUT}={raw[ENV_PATH_TIMEOUT]!r}: {exc}") from None
        fields: dict[str, Any] = {"idle": base.idle, "interval": base.interval, "count": base.count}
        for name, key, bounds, unit in (
            (ENV_IDLE, "idle", IDLE_RANGE, "seconds"),
            (ENV_INTERVAL, "interval", INTERVAL_RANGE, "seconds"),
            (ENV_COUNT, "count", COUNT_RANGE, "probes"),
        ):
            if name in raw:
                value = _env_number(name, raw[name])
                try:
                    fields[key] = _whole(name, value, bounds, unit)
                except InvalidPolicy as exc:
                    raise InvalidPolicy(f"{name}={raw[name]!r}: {exc}") from None
        if ENV_USER_TIMEOUT in raw:
            text = raw[ENV_USER_TIMEOUT]
            try:
                fields["user_timeout"] = _user_timeout_text(ENV_USER_TIMEOUT, text)
            except InvalidPolicy as exc:
                raise InvalidPolicy(f"{ENV_USER_TIMEOUT}={text!r}: {exc}") from None
        policy = cls(**fields)
        if path_timeout is not None and policy.idle + policy.interval >= path_timeout:
            raise InvalidPolicy(
                f"{ENV_IDLE}={policy.idle} + {ENV_INTERVAL}={policy.interval} must stay below "
                f"{ENV_PATH_TIMEOUT}={raw[ENV_PATH_TIMEOUT]!r}, or the path forgets idle connections "
                "before the second probe"
            )
        return policy

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Parse ``"idle,interval,count[,user_timeout]"`` or ``"idle=60,interval=10,count=5,user_timeout=off"``.

        Missing fields keep the built-in default's values. ``user_timeout`` takes seconds, ``off`` (or ``0``: turn
        TCP_USER_TIMEOUT off) or ``keep`` (leave the socket's own value). Used by command-line flags such as
        ``--policy``.

        Raises:
            InvalidPolicy: the text is malformed or a value is out of range; the message quotes the text.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidPolicy(f"policy must look like 'idle,interval,count' (e.g. '60,10,5'), got {text!r}")
        names = ("idle", "interval", "count", "user_timeout")
        parts = [p.strip() for p in text.split(",")]
        fields: dict[str, Any] = {}
        for index, part in enumerate(parts):
            key, sep, value = part.partition("=")
            if sep:
                key = key.strip().lower().replace("-", "_")
                if key not in names:
                    raise InvalidPolicy(f"policy {text!r}: unknown field {key!r}; expected one of {', '.join(names)}")
            else:
                if index >= len(names):
                    raise InvalidPolicy(f"policy {text!r}: at most 4 values (idle,interval,count,user_timeout)")
                key, value = names[index], part
            value = value.strip()
            if key == "user_timeout" and (is_keep(value) or is_off(value)):
                fields[key] = _user_timeout_text(key, value)
                continue
            try:
                fields[key] = _env_number(key, value)
            except InvalidPolicy:
                raise InvalidPolicy(f"policy {text!r}: {key} must be a number, got {value!r}") from None
        try:
            return cls(**fields)
        except InvalidPolicy as exc:
            raise InvalidPolicy(f"policy {text!r}: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The ``KEEPALIVE_*`` environment variables that reproduce this policy (see :meth:`from_env`)."""
        return {
            ENV_IDLE: str(self.idle),
            ENV_INTERVAL: str(self.interval),
            ENV_COUNT: str(self.count),
            ENV_USER_TIMEOUT: "keep" if self.user_timeout is None else _seconds(self.user_timeout),
        }

    def __str__(self) -> str:
        if self.user_timeout is None:
            user = "keep"
        elif self.user_timeout == 0:
            user = "off"
        else:
            user = f"{_seconds(self.user_timeout)}s"
        return f"idle={self.idle}s interval={self.interval}s count={self.count} user_timeout={user}"

    def to_dict(self) -> dict[str, Any]:
        """``{"idle": 60, "interval": 10, "count": 5, "user_timeout": 110}`` (user_timeout None when left alone)."""
        return {"idle": self.idle, "interval": self.interval, "count": self.count, "user_timeout": self.user_timeout}


def _env_number(name: str, text: str) -> float:
    value = text.strip().lower()
    if value.endswith("s") and not value.endswith("ms"):
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise InvalidPolicy(f"{name}={text!r}: expected a number of seconds") from None
    if not math.isfinite(number):
        raise InvalidPolicy(f"{name}={text!r}: expected a finite number of seconds")
    return int(number) if number.is_integer() else number


#: The default when nothing else is known: below the lowest common cloud idle timeout (Azure LB / NAT, 240 s).
BUILTIN_POLICY: Final = Policy(idle=60, interval=10, count=5)
#: The tightest keepalive there is, for a path timeout too short for :meth:`Policy.below` (under 3 s).
SHORTEST_POLICY: Final = Policy(idle=1, interval=1, count=5)
_BUILTIN_WHY: Final = "built-in default (below Azure's 240 s, the lowest common cloud idle timeout)"
#: The variables that set timings explicitly (``KEEPALIVE_PATH_TIMEOUT`` is evidence about the path instead).
_TIMING_VARS: Final = (
    (ENV_IDLE, "idle"),
    (ENV_INTERVAL, "interval"),
    (ENV_COUNT, "count"),
    (ENV_USER_TIMEOUT, "user_timeout"),
)

_default: tuple[Policy, str] | None = None
_fallback: tuple[Policy, str] | None = None
_default_lock = _thread.RLock()


def _reset_lock_in_child() -> None:
    global _default_lock
    _default_lock = _thread.RLock()


if hasattr(os, "register_at_fork"):
    # A fork while another thread holds the lock (a slow first resolution) must not deadlock the child.
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def tighter(first: Policy, second: Policy) -> Policy:
    """The policy whose second probe comes sooner (smaller ``idle + interval``); ``second`` on a tie."""
    return first if first.idle + first.interval < second.idle + second.interval else second


def recommended_policy(path_timeout: float | None, named: bool, label: str | None = None) -> tuple[Policy, str]:
    """The rule from a path timeout to the default policy, and why (docs/policy.md has the table).

    * no path timeout known: :data:`BUILTIN_POLICY`;
    * the user named the path (``named``: a path timeout or a middlebox): ``Policy.below(path_timeout)``;
    * only node evidence: the tighter of ``Policy.below(path_timeout)`` and :data:`BUILTIN_POLICY`, because the
      node cannot see cloud NATs and load balancers: node evidence tightens the default, never loosens it;
    * a path timeout under 3 s: :data:`SHORTEST_POLICY`.
    """
    if path_timeout is None:
        return BUILTIN_POLICY, _BUILTIN_WHY
    where = f" ({label})" if label else ""
    try:
        derived = Policy.below(path_timeout)
    except InvalidPolicy:
        why = f"the shortest possible keepalive: the path timeout {path_timeout:g} s{where} is under 3 s"
        return SHORTEST_POLICY, why
    if named:
        return derived, f"Policy.below({path_timeout:g}) of the path timeout{where}"
    if tighter(derived, BUILTIN_POLICY) is derived:
        return derived, f"Policy.below({path_timeout:g}) of the path timeout found on this node{where}"
    return BUILTIN_POLICY, (
        f"built-in default: the node's path timeout {path_timeout:g} s{where} is longer, and the built-in default "
        "also covers cloud NAT/LB idle timeouts down to 240 s, which the node cannot see"
    )


def _detect_path() -> tuple[float, bool, str] | None:
    """(path timeout, named, where from) from the path model's cheap local evidence; None when none. Never raises."""
    try:
        from keepalive._path._model import gather

        model = gather(evidence_only=True)
    except Exception:
        log.debug("path timeout detection failed", exc_info=True)
        return None
    shortest = model.shortest
    if shortest is None:
        return None
    return shortest.timeout, model.named, shortest.label


def _detected_path_timeout() -> tuple[float, bool] | None:
    """The path timeout from the environment and this node, and whether the user named the path; never raises."""
    found = _detect_path()
    return None if found is None else (found[0], found[1])


def explain_path_timeout(path_timeout: float | None = None) -> tuple[float | None, str]:
    """The path timeout a verdict about sockets uses, and where it comes from (the audit's yardstick).

    ``path_timeout`` given: that. Else the model's, when the user named the path, or when the node's own evidence
    is tighter than what :data:`BUILTIN_POLICY` covers; otherwise None: the default policy is the yardstick.

    Raises:
        ValueError: ``path_timeout`` is not a positive number.
    """
    if path_timeout is not None:
        if isinstance(path_timeout, bool) or not isinstance(path_timeout, int | float) or not path_timeout > 0:
            raise ValueError(f"path_timeout must be a positive number of seconds, got {path_timeout!r}")
        return float(path_timeout), "given"
    found = _detect_path()
    if found is None:
        return None, "unknown: none configured or found on this node"
    timeout, named, label = found
    if named:
        return timeout, f"configured ({label})"
    if recommended_policy(timeout, named)[0] is not BUILTIN_POLICY:
        return timeout, f"found on this node ({label})"
    return None, (
        f"not configured; this node's own {timeout:g} s ({label}) is not used because cloud NAT/load balancer idle "
        "timeouts (Azure: 240 s) cannot be seen from here: set KEEPALIVE_PATH_TIMEOUT or KEEPALIVE_MIDDLEBOX"
    )


def _compute_default() -> tuple[Policy, str]:
    env = os.environ
    Policy.from_env(env)  # every KEEPALIVE_* variable is validated first: a broken one raises, whatever ran before
    found = _detect_path()
    base, why = recommended_policy(*found) if found is not None else (BUILTIN_POLICY, _BUILTIN_WHY)
    given = [(name, key) for name, key in _TIMING_VARS if env.get(name, "").strip()]
    if not given:
        return base, why
    explicit = Policy.from_env({name: env[name] for name, _ in given})
    if explicit is None:  # not reached: at least one variable is set
        return base, why
    policy = base.replace(**{key: getattr(explicit, key) for _, key in given})
    names = ", ".join(f"{name}={env[name].strip()}" for name, _ in given)
    return policy, f"environment ({names}); other fields: {why}"


def explain_default_policy() -> tuple[Policy, str]:
    """The process's default policy and where it came from (cached like :func:`default_policy`).

    Raises:
        InvalidPolicy: a ``KEEPALIVE_*`` variable is malformed (never cached: every call raises until it is fixed).
    """
    global _default
    cached = _default
    if cached is not None:
        return cached
    with _default_lock:
        if _default is None:
            _default = _compute_default()
        return _default


def default_policy() -> Policy:
    """The policy used when none is given, computed once per process and cached.

    ``KEEPALIVE_IDLE``/``_INTERVAL``/``_COUNT``/``_USER_TIMEOUT`` are the policy when set (fields not set come from
    the rule below). Otherwise, from the path's idle timeout (the minimum over ``KEEPALIVE_PATH_TIMEOUT``,
    ``KEEPALIVE_MIDDLEBOX``, this node's conntrack timeout, kube-proxy's configuration): when the user named the
    path (a path timeout or a middlebox), :meth:`Policy.below` of it; when only the node's evidence is known, the
    tighter of that and :data:`BUILTIN_POLICY` (idle 60, interval 10, count 5); with no evidence, the built-in.

    Raises:
        InvalidPolicy: a ``KEEPALIVE_*`` variable is malformed (the result is not cached, so fixing the
            environment and calling again works; so does every call before it is fixed).
    """
    cached = _default
    if cached is not None:
        return cached[0]
    return explain_default_policy()[0]


def resolve_default_policy() -> Policy:
    """:func:`default_policy`, but never raising: a broken ``KEEPALIVE_*`` setting is logged once as an error
    and :data:`BUILTIN_POLICY` is used instead. Wrappers and adapters use this.

    The fallback is remembered apart from the default, so :func:`default_policy` and :func:`keepalive.check` still
    report the broken setting afterwards.
    """
    global _fallback
    cached = _default
    if cached is not None:
        return cached[0]
    fallback = _fallback
    if fallback is not None:
        return fallback[0]
    try:
        return explain_default_policy()[0]
    except InvalidPolicy as exc:
        with _default_lock:
            if _fallback is None:
                log.error(
                    "keepalive: ignoring the environment and using the built-in policy (%s): %s",
                    BUILTIN_POLICY,
                    exc,
                    extra={"keepalive_error": str(exc)},
                )
                _fallback = (BUILTIN_POLICY, f"built-in default (the environment is invalid: {exc})")
            return _fallback[0]


def reset_default_policy() -> None:
    """Forget the cached default policy, so the next :func:`default_policy` call recomputes it (for tests)."""
    global _default, _fallback
    with _default_lock:
        _default = None
        _fallback = None
