"""`example-if`: integrate-and-fire without leak, soft reset, and a sigmoid surrogate gradient."""

import torch

from tawq_core import Neuron
from tawq_core.plugin import NeuronDynamics, check_multistep, straight_through


class IntegrateFire(Neuron):
    """h = v + x; spike when h >= v_threshold; v = h - spike * v_threshold (state fresh every call)."""

    def __init__(self, v_threshold: float = 1.0, alpha: float = 4.0):
        super().__init__()
        self.v_threshold, self.alpha = float(v_threshold), float(alpha)

    def forward(self, x):
        check_multistep(x, "neuron 'example-if'")
        v, spikes = torch.zeros_like(x[0]), []
        for x_t in x:
            h = v + x_t
            fired = (h >= self.v_threshold).to(x.dtype)
            # forward: exactly the spike; backward: the sigmoid's slope (the surrogate gradient)
            spikes.append(straight_through(torch.sigmoid(self.alpha * (h - self.v_threshold)), fired))
            v = h - fired * self.v_threshold
        return torch.stack(spikes)

    def describe_dynamics(self):
        """The same dynamics in tawq's shared description, so NIR and ONNX export can express it."""
        return NeuronDynamics("none", None, v_threshold=self.v_threshold, v_reset=None,
                              surrogate="sigmoid", alpha=self.alpha, source="tawq-example:example-if")
