"""Tiny quantized models whose layers fire, and the fp32 reference of one deployed layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tawq_core import create, quantize
from tawq_core.deploy.codes import integer_weights

T, B = 4, 3

#: (model plugin, options): every built-in architecture, 1-D and 2-D, at a few hundred weights per layer
MODELS = {
    "mlp": ("mlp", {"sample_shape": (1, 24), "hidden": (32, 24)}),
    "sew-resnet-1d": ("sew-resnet", {"sample_shape": (1, 16), "layers": (1, 1), "width": 8}),
    "sew-resnet-2d": ("sew-resnet", {"sample_shape": (2, 8, 8), "layers": (1, 1), "width": 8}),
    "spikingformer": ("spikingformer", {"sample_shape": (3, 4, 4), "embed_dim": 16, "depth": 1, "heads": 2}),
    "qkformer": ("qkformer", {"sample_shape": (3, 4, 4), "embed_dim": 16, "depth": 3, "heads": 2}),
}
QUANTIZERS = ("tawq", "mtawq", "ternary", "binary", "ptq8")


def quantized_model(model: str, quantizer, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """(eval-mode quantized model, input [T, B, ...]) whose every quantized layer sees 5-20 % active inputs:
    BatchNorm statistics fitted on the input (cumulative), then gamma 2."""
    torch.manual_seed(seed)
    plugin, options = MODELS[model]
    net = create("model", plugin, num_classes=4, **options)
    quantize(net, quantizer, T)
    x = torch.rand(T, B, *options["sample_shape"]) * 3
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None
    with torch.no_grad():
        net.train()
        for _ in range(2):
            net(x)
        for norm in norms:
            norm.weight.fill_(2.0)
    return net.eval(), x


def reference(fake_quant: nn.Module, x: Tensor) -> Tensor:
    """``op(x_t, q_t) * alpha_t + bias`` in fp32, from the layer's own packed codes (not the deployed form)."""
    codes = integer_weights(fake_quant.pack(), builtin=True)
    steps = codes.q.shape[0]
    if isinstance(fake_quant, nn.Linear):
        rows = x.reshape(steps, -1, x.shape[-1]) if steps > 1 else x.reshape(1, -1, x.shape[-1])
        op = F.linear
    else:
        dims = 2 if isinstance(fake_quant, nn.Conv1d) else 3
        rows = x.reshape(steps if steps > 1 else 1, -1, *x.shape[-dims:])
        conv = F.conv1d if dims == 2 else F.conv2d
        def op(v: Tensor, w: Tensor) -> Tensor:  # noqa: E306
            return conv(v, w, None, fake_quant.stride, fake_quant.padding, fake_quant.dilation, fake_quant.groups)
    outputs = []
    for t in range(rows.shape[0]):
        y = op(rows[t], codes.q[t].float())
        y = y * codes.alpha[t].reshape(-1, *([1] * (y.dim() - 2)))
        if fake_quant.bias is not None:
            y = y + fake_quant.bias.reshape(-1, *([1] * (y.dim() - 2)))
        outputs.append(y)
    y = torch.cat(outputs)
    lead = x.shape[:-1] if isinstance(fake_quant, nn.Linear) else x.shape[: x.dim() - (y.dim() - 1)]
    return y.reshape(*lead, *y.shape[1:])
