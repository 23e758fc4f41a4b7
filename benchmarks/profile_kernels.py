"""tawq's CPU kernels against the eager PyTorch paths they replace (CPU time of one thread, median).

    .venv/bin/python benchmarks/profile_kernels.py

Neuron: the LIF forward as training runs it (the eager loop also writes ``h`` for its backward; the
fused kernel does not), its BPTT, and the inference forward, on activations of the benchmark networks'
sizes. Quantizer: tawq's effective weights, forward + backward, on three weight shapes, with the
fused dynamics kernel and with ``TAWQ_QUANT_KERNEL=torch``. Thread CPU time, not wall time: on a shared
machine it is what moves least with other processes' load.
"""

from __future__ import annotations

import statistics
import time

import torch

import tawq_core
from tawq_plugins.neurons import cpu_fused, dynamics
from tawq_plugins.quantizers import calcium


def _ms(fn, rounds: int = 20) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.thread_time()
        fn()
        samples.append((time.thread_time() - start) * 1e3)
    return statistics.median(samples)


def _neuron_row(d, shape: tuple[int, ...]) -> str:
    x, grad = torch.randn(*shape) + 0.5, torch.randn(*shape)
    _, charged = dynamics._run(d, x, 2.0, True)
    pairs = [(lambda: dynamics._run(d, x, 2.0, True), lambda: cpu_fused.run(d, x, 2.0, False)),
             (lambda: dynamics._bptt(d, grad, charged, None, 2.0, False),
              lambda: cpu_fused.bptt(d, grad, x, x, 2.0, False)),
             (lambda: dynamics._run(d, x, 2.0, False), lambda: cpu_fused.run(d, x, 2.0, False))]
    return f"| {list(shape)} | " + " | ".join(f"{_ms(a):.2f} / {_ms(b):.2f}" for a, b in pairs) + " |"


def neuron_table() -> list[str]:
    d = tawq_core.create("neuron", "lif").dynamics
    lines = ["| LIF input [T, B, ...] | forward (train) eager / fused ms | backward eager / fused ms | "
             "inference eager / fused ms |", "|---|---|---|---|"]
    return lines + [_neuron_row(d, shape) for shape in ((4, 64, 16, 28, 28), (4, 128, 800), (4, 128, 256))]


def _quant_row(tawq, shape: tuple[int, ...]) -> str:
    w = (0.1 * torch.randn(*shape)).requires_grad_()
    eager = _ms(lambda: calcium.CalciumQuant.apply(calcium.standardize(w), 4, 1).sum().backward())
    fused = _ms(lambda: tawq.weights(w, 4).sum().backward())
    return f"| {list(shape)} | {eager:.2f} | {fused:.2f} |"


def quantizer_table() -> list[str]:
    tawq = tawq_core.create("quantizer", "tawq")
    lines = ["| tawq weight | eager fwd+bwd ms | fused fwd+bwd ms |", "|---|---|---|"]
    return lines + [_quant_row(tawq, shape) for shape in ((32, 32, 3), (128, 128, 3), (512, 128, 3))]


def main() -> None:
    torch.set_num_threads(1)
    print("\n".join(neuron_table() + [""] + quantizer_table()))


if __name__ == "__main__":
    main()
