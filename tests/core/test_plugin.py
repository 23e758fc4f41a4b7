"""tawq_core.plugin: the helpers plugin authors use are tawq's own (one source each), and the built-in
plugins use only public names of tawq_core, as a third-party plugin would."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import tawq_core
import tawq_core.plugin as plugin
import tawq_core.testing as testing
from tawq_core import ConfigError
from tawq_core.plugin_api.neuron import NeuronDynamics

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"tawq_core": set(tawq_core.__all__), "tawq_core.plugin": set(plugin.__all__),
          "tawq_core.testing": set(testing.__all__)}


def _tawq_core_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every import from tawq_core.* in `path` (`import x` gives name "")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tawq_core":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names if alias.name.startswith("tawq_core")]
    return found


def test_builtin_plugins_import_only_public_names():
    files = sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "backends").rglob("*.py"))
    assert len(files) > 20
    private = [f"{path.relative_to(ROOT)}:{line}: {module}.{name}".rstrip(".")
               for path in files for line, module, name in _tawq_core_imports(path)
               if module not in PUBLIC or (name and name not in PUBLIC[module])]
    assert not private, "built-in plugins must use public names only (tawq_core.__all__, tawq_core.plugin, "\
                        "tawq_core.testing):\n" + "\n".join(private)


def test_the_import_scan_sees_private_imports(tmp_path):
    source = tmp_path / "p.py"
    source.write_text("from tawq_core.plugin_api.quantizer import straight_through\nimport tawq_core.nn.packing\n")
    assert _tawq_core_imports(source) == [(1, "tawq_core.plugin_api.quantizer", "straight_through"),
                                          (2, "tawq_core.nn.packing", "")]


def test_helpers_are_the_implementations_tawq_uses():
    from tawq_core.nn import packing
    from tawq_core.plugin_api import quantizer

    assert plugin.straight_through is quantizer.straight_through
    assert plugin.pack_digits is packing.pack_digits and plugin.unpack_patterns is packing.unpack_patterns
    assert plugin.check_timesteps is quantizer.check_timesteps


def test_straight_through_forwards_exactly_and_passes_gradients():
    w = torch.randn(5, requires_grad=True)
    q = torch.round(w.detach() * 3) / 3
    out = plugin.straight_through(w, q)
    assert torch.equal(out, q)
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones(5))


def test_neuron_dynamics_is_validated_once():
    NeuronDynamics("div", 2.0)
    for bad, fragment in [(dict(leak="exp", k=2.0), "leak must be one of"), (dict(leak="none", k=2.0), "needs k None"),
                          (dict(leak="div", k=None), "needs k > 0"), (dict(leak="div", k=-1.0), "k must be > 0"),
                          (dict(leak="div", k=2.0, v_reset=1.0), "v_reset (1.0) must be below v_threshold"),
                          (dict(leak="none", k=None, v_threshold=float("nan")), "v_threshold must be finite")]:
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            NeuronDynamics(**bad)


def test_builtin_neurons_describe_their_dynamics():
    lif = tawq_core.create("neuron", "lif", tau=3.0, v_reset=None)
    assert lif.describe_dynamics() == NeuronDynamics("div", 3.0, v_reset=None, source="tawq:lif")
    plif = tawq_core.create("neuron", "plif", tau=2.0).describe_dynamics()
    assert plif.leak == "mul" and plif.tau == pytest.approx(2.0)
