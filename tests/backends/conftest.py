"""Stand-ins for hardware this machine lacks, clearly named as such."""

from __future__ import annotations

import pytest


class StandInEvent:
    """Stand-in for torch.cuda.Event / torch.npu.Event: time comes from the stand-in API's clock (ms)."""

    def __init__(self, api: StandInDeviceApi, enable_timing: bool = False):
        assert enable_timing, "timing events must be created with enable_timing=True"
        self.api, self.at_ms, self.stream, self.synchronized = api, None, None, False

    def record(self, stream=None) -> None:
        self.at_ms, self.stream = self.api.clock_ms, stream

    def synchronize(self) -> None:
        self.synchronized = True

    def elapsed_time(self, end: StandInEvent) -> float:
        assert end.synchronized, "elapsed_time read before the end event completed"
        return end.at_ms - self.at_ms


class StandInDeviceApi:
    """Stand-in for the torch.cuda / torch.npu module: a device clock and allocator statistics."""

    def __init__(self):
        self.clock_ms = 0.0
        self.allocated = 1000
        self.peak = 5000  # a stale peak from before any region
        self.calls: list[str] = []

    def Event(self, enable_timing: bool = False) -> StandInEvent:  # noqa: N802 - mirrors torch's name
        return StandInEvent(self, enable_timing)

    def current_stream(self, index: int) -> str:
        return f"stream-{index}"

    def synchronize(self, index: int) -> None:
        self.calls.append(f"synchronize({index})")

    def reset_peak_memory_stats(self, index: int) -> None:
        self.calls.append(f"reset({index})")
        self.peak = self.allocated

    def memory_allocated(self, index: int) -> int:
        return self.allocated

    def max_memory_allocated(self, index: int) -> int:
        return self.peak

    def max_memory_reserved(self, index: int) -> int:
        return 2 * self.peak

    def allocate(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)

    def free(self, nbytes: int) -> None:
        self.allocated -= nbytes


@pytest.fixture
def stand_in_device_api() -> StandInDeviceApi:
    return StandInDeviceApi()
