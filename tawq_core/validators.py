"""The one integer-field validator: every "must be an integer >= k" in tawq (flags, presets, configs, file
records) goes through here, so the rule (bools are not integers) and the message are the same everywhere."""

from __future__ import annotations

from typing import Any

from tawq_core.errors import ConfigError


def is_int_at_least(value: Any, minimum: int) -> bool:
    """True for a real integer (not a bool, which Python counts as one) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_int_at_least(what: str, value: Any, minimum: int = 1) -> int:
    """`value` if `is_int_at_least`, else a one-line ConfigError naming `what`."""
    if not is_int_at_least(value, minimum):
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value
