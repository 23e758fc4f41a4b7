"""The CUDA device guard every Triton launch runs under.

A Triton kernel launches on the *current* CUDA device and its stream, not on the device its tensor
arguments live on. A process whose model sits on ``cuda:1`` while the current device is still 0 would
have the kernel read cuda:1 memory from a cuda:0 stream (wrong results or an illegal access). Each
launch therefore makes its tensor's device current for the duration of the launch.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
from torch import Tensor


def on_device_of(tensor: Tensor) -> AbstractContextManager[object]:
    """``with on_device_of(x): kernel[grid](x, ...)``: x's CUDA device is current inside the block.

    A no-op for non-CUDA tensors (Triton's CPU interpreter, ``TRITON_INTERPRET=1``).
    """
    if tensor.device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(tensor.device)
