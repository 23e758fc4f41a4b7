"""`lif`: multi-step leaky integrate-and-fire neuron with a surrogate gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import Neuron, hookimpl
from tawq_core.neuron import check_multistep


class _SigmoidSpike(torch.autograd.Function):
    """Heaviside forward; derivative of sigmoid(a·u) backward (a = 4 in the reference)."""

    @staticmethod
    def forward(ctx, u: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (u,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * u)
        return grad * ctx.alpha * s * (1 - s), None


class LIF(Neuron):
    """v ← v + (x − (v − v_reset)) / τ; spike when v ≥ v_th; hard reset to v_reset."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 detach_reset: bool = True, alpha: float = 4.0):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.detach_reset, self.alpha = detach_reset, alpha

    def forward(self, x: Tensor) -> Tensor:
        check_multistep(x, "lif")
        v = torch.full_like(x[0], self.v_reset)
        spikes = []
        for x_t in x:
            v = v + (x_t - (v - self.v_reset)) / self.tau
            s = _SigmoidSpike.apply(v - self.v_threshold, self.alpha)
            s_reset = s.detach() if self.detach_reset else s
            v = v * (1 - s_reset) + self.v_reset * s_reset
            spikes.append(s)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


@hookimpl
def tawq_register_neurons(register):
    register("lif", LIF)
