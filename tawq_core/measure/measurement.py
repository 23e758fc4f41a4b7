"""A measured figure, or the honest reason it could not be measured.

Every latency, memory and energy number in tawq carries the method that produced it; a figure the
hardware cannot give is `Measurement.unavailable(reason)`, printed as ``n/a: reason``, never a guess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Measurement:
    value: float | None
    unit: str
    method: str  # how the value was obtained, or why it could not be
    #: facts behind the figure that a reader may want as numbers (window_s, calls, samples...);
    #: not part of equality or hashing, so two equal readings compare equal whatever their windows.
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def unavailable(cls, unit: str, reason: str, **details: Any) -> Measurement:
        return cls(None, unit, f"unavailable: {reason}", dict(details))

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.value is None:
            return f"n/a ({self.method.removeprefix('unavailable: ')})"
        return f"{self.value:.4g} {self.unit}"
