"""The calcium Triton kernel's bit-equality with the eager path holds only for a power-of-two tau: it says so."""

from __future__ import annotations

import pytest
import torch

from tawq_core import ConfigError
from tawq_plugins.quantizers import calcium_fused


@pytest.mark.parametrize("tau", [3.0, 0.3, 0.0])
def test_non_power_of_two_tau_is_refused_in_one_line(tau):
    with pytest.raises(ConfigError, match=r"power-of-two tau.*TAWQ_QUANT_KERNEL=torch") as caught:
        calcium_fused.run(torch.zeros(3, 4), timesteps=2, levels=1, jacobian=False, tau=tau, theta=0.25, slope=4.0)
    assert "\n" not in str(caught.value)
