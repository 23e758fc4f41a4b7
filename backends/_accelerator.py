"""What the cuda and npu backends share: device-event timing and allocator peak memory.

``torch.cuda`` and ``torch.npu`` (added by torch_npu) expose the same API for events, synchronize and
memory statistics, so one implementation serves both; a subclass only says which module to use and
how to tell whether it can run.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch

from tawq_core import Backend, Measurement, MeterReading, Timer
from tawq_core.plugin import peak_memory_measurement


class EventTimer(Timer):
    """A pair of device events (enable_timing=True) recorded on the device's current stream around the
    region; ``elapsed_time`` is read after the end event has completed, so host-side launch overhead that
    does not delay the device is not counted."""

    def __init__(self, api: Any, index: int):
        self._stream = api.current_stream(index)
        self._start = api.Event(enable_timing=True)
        self._end = api.Event(enable_timing=True)
        self._elapsed: float | None = None

    def __enter__(self) -> EventTimer:
        self._start.record(self._stream)
        return self

    def __exit__(self, *exc: object) -> None:
        self._end.record(self._stream)
        self._end.synchronize()
        self._elapsed = self._start.elapsed_time(self._end) / 1e3  # ms -> s

    @property
    def elapsed_s(self) -> float:
        if self._elapsed is None:
            raise RuntimeError("EventTimer.elapsed_s read before the timed region ended")
        return self._elapsed


class AcceleratorBackend(Backend):
    """A torch device type with the ``torch.cuda``-style API (cuda, npu), one device index each."""

    #: torch device type (``cuda``, ``npu``) and the name of its API module in user-facing text.
    device_type: str = ""
    api_name: str = ""
    timer_class: type[EventTimer] = EventTimer

    def __init__(self, index: int = 0):
        self.index = int(index)

    @abstractmethod
    def _api(self) -> ModuleType:
        """The torch device module (``torch.cuda`` / ``torch.npu``), importing what it needs lazily."""

    @property
    def device(self) -> torch.device:
        self.require()
        return torch.device(self.device_type, self.index)

    def synchronize(self) -> None:
        self.require()
        self._api().synchronize(self.index)

    def timer(self) -> Timer:
        self.require()
        return self.timer_class(self._api(), self.index)

    @contextmanager
    def peak_memory(self) -> Iterator[MeterReading]:
        """Bytes held by tensors on the device: ``max_memory_allocated`` after ``reset_peak_memory_stats`` (the
        absolute peak, weights included) minus ``memory_allocated`` at the start. The caching allocator's
        reserved-but-free blocks are not counted; they are recorded in the details."""
        self.require()
        api = self._api()
        reading = MeterReading("B")
        api.synchronize(self.index)
        api.reset_peak_memory_stats(self.index)
        baseline = int(api.memory_allocated(self.index))
        yield reading
        api.synchronize(self.index)
        peak = int(api.max_memory_allocated(self.index))
        reading.result = peak_memory_measurement(
            peak, baseline,
            f"bytes held by tensors on the device: peak = {self.api_name}.max_memory_allocated after "
            f"reset_peak_memory_stats before the region; baseline = {self.api_name}.memory_allocated at the start",
            reserved_bytes=int(api.max_memory_reserved(self.index)),
        )


@contextmanager
def unavailable_meter(unit: str, reason: str) -> Iterator[MeterReading]:
    """A meter that can give no figure here: the block runs, the result says why there is none."""
    reading = MeterReading(unit)
    yield reading
    reading.result = Measurement.unavailable(unit, reason)
