"""`cuda`: NVIDIA GPUs; CUDA-event timing, allocator peak memory, NVML energy, nccl."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import torch

from tawq_backends._accelerator import AcceleratorBackend, EventTimer, unavailable_meter
from tawq_backends.nvml import (
    COUNTER_UPDATE_S,
    handle_by_uuid,
    import_pynvml,
    nvml_energy,
    nvml_energy_availability,
)
from tawq_core import Availability, MeterReading, hookimpl


class CudaEventTimer(EventTimer):
    method = "torch.cuda.Event(enable_timing=True) pair on the current stream; elapsed_time after the end event"


def cuda_availability(index: int = 0) -> Availability:
    """Whether `index` names a usable CUDA device, and what is missing when not."""
    if torch.version.cuda is None and torch.version.hip is None:
        return Availability(False, f"this torch build has no CUDA support (torch {torch.__version__}); "
                                   "install a CUDA build of torch")
    if not torch.cuda.is_available():
        return Availability(False, "no CUDA device is visible (torch.cuda.is_available() is False; check "
                                   "nvidia-smi, the driver and CUDA_VISIBLE_DEVICES)")
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        return Availability(False, f"CUDA device index {index} does not exist ({count} visible)")
    return Availability(True, "")


class CudaBackend(AcceleratorBackend):
    name = "cuda"
    dist_backend = "nccl"
    device_type = "cuda"
    api_name = "torch.cuda"
    timer_class = CudaEventTimer
    # the energy counter refreshes every 20-100 ms: 2 s keeps its quantisation error to a few percent
    energy_min_window_s = 2.0

    def is_available(self) -> Availability:
        return cuda_availability(self.index)

    def _api(self) -> ModuleType:
        return torch.cuda

    def _nvml_handle(self, pynvml: ModuleType) -> Any:
        return handle_by_uuid(pynvml, str(torch.cuda.get_device_properties(self.index).uuid))

    def energy_availability(self) -> Availability:
        ok, reason = self.is_available()
        if not ok:
            return Availability(False, reason)
        return nvml_energy_availability(import_pynvml()[0], self._nvml_handle)

    def energy_meter(self) -> AbstractContextManager[MeterReading]:
        ok, reason = self.is_available()
        if not ok:
            return unavailable_meter("J", f"backend 'cuda' is unavailable: {reason}")
        return nvml_energy(import_pynvml()[0], self._nvml_handle, self.synchronize,
                           min_window_s=COUNTER_UPDATE_S)

    def describe(self) -> dict[str, str]:
        facts = {"backend": self.name, "torch": torch.__version__, "cuda_runtime": str(torch.version.cuda)}
        ok, reason = self.is_available()
        if not ok:
            return {**facts, "unavailable": reason}
        props = torch.cuda.get_device_properties(self.index)
        facts.update(device=props.name, capability=f"{props.major}.{props.minor}",
                     memory_bytes=str(props.total_memory), index=str(self.index))
        pynvml, _ = import_pynvml()
        if pynvml is not None:
            try:
                pynvml.nvmlInit()
                try:
                    facts["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
                finally:
                    pynvml.nvmlShutdown()
            except Exception as exc:  # describe() must never fail because NVML is broken
                facts["driver"] = f"unknown (NVML: {type(exc).__name__})"
        return facts


@hookimpl
def tawq_register_backends(register):
    register("cuda", CudaBackend)
