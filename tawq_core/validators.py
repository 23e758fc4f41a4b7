"""The shared field validators: every "must be an integer >= k" in tawq (flags, presets, configs, file records)
and every config dataclass's name, list, table, number and choice check goes through here, so each rule (bools
are not integers) and its one-line message are the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from tawq_core.plugin_api.errors import ConfigError


def is_int_at_least(value: Any, minimum: int) -> bool:
    """True for a real integer (not a bool, which Python counts as one) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_int_at_least(what: str, value: Any, minimum: int = 1) -> int:
    """`value` if `is_int_at_least`, else a one-line ConfigError naming `what`."""
    if not is_int_at_least(value, minimum):
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive_number(what: str, value: Any) -> float:
    """`value` as a float if it is a real number (not a bool) > 0, else a one-line ConfigError naming `what`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


def check_name(what: str, value: Any) -> str:
    """A non-empty name, stripped of surrounding blanks."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty name, got {value!r}")
    return value.strip()


def check_names(what: str, value: Any) -> tuple[str, ...]:
    """A non-empty list of distinct names; a string is read as comma-separated (``"tawq,ptq8"``)."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{what} must be a non-empty list of names, got {value!r}")
    names = tuple(check_name(what, v) for v in value)
    if len(set(names)) != len(names):
        raise ConfigError(f"{what} lists a name twice: {', '.join(names)}")
    return names


def check_table(what: str, value: Any) -> dict[str, Any]:
    """A mapping (a TOML table), as a new dict."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a table of options, got {value!r}")
    return dict(value)


def check_bool(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    return value


E = TypeVar("E", bound=Enum)


def check_choice(what: str, value: Any, choices: type[E]) -> E:
    """`value` as a member of the string enum `choices` (a member or its value)."""
    try:
        return choices(value)
    except ValueError:
        raise ConfigError(f"{what} must be one of {', '.join(c.value for c in choices)}, got {value!r}") from None
