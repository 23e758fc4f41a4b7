"""#18.5: importing tawq is cheap and changes nothing in the host process; the `tawq` command alone turns
torch's device-extension auto-loading off, for itself.

Fresh interpreters are the point (what a process has imported, and its environment, at start)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import tawq_core

HEAVY = ("torch", "numba", "triton", "tawq_core.training.loop", "tawq_core.export", "tawq_core.measure.energy",
         "tawq_core.training.resources", "tawq_core.deploy", "tawq_core.bench")

IMPORT_THEN_LOOK_UP = f"""
import json, os, sys
before = dict(os.environ)
import tawq_core
changed = sorted(k for k in {{*before, *os.environ}} if before.get(k) != os.environ.get(k))
on_import = [m for m in {HEAVY!r} if m in sys.modules]
tawq_core.create("quantizer", "fp32")
on_lookup = [m for m in ("numba", "triton") if m in sys.modules]
print(json.dumps({{"changed": changed, "on_import": on_import, "on_lookup": on_lookup}}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAWQ_") and k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def test_import_changes_no_environment_and_a_lookup_compiles_nothing():
    done = subprocess.run([sys.executable, "-c", IMPORT_THEN_LOOK_UP], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"changed": [], "on_import": [], "on_lookup": []}


def test_every_public_name_resolves_and_deploy_export_stay_functions():
    import tawq_core.deploy.forms  # noqa: F401 - loading a subpackage must not replace the function
    import tawq_core.export.packed_load  # noqa: F401

    missing = [name for name in tawq_core.__all__ if getattr(tawq_core, name, None) is None]
    assert not missing
    assert callable(tawq_core.deploy) and callable(tawq_core.export)
    assert set(dir(tawq_core)) >= set(tawq_core.__all__)


def test_the_name_lists_agree():
    """`_EXPORTS` (runtime), the imports for type checkers and `__all__` name the same things."""
    tree = ast.parse(Path(tawq_core.__file__).read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    typed = {(node.module, alias.name) for node in guarded.body if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    lazy = {(module, name) for module, names in tawq_core._EXPORTS.items() for name in names}
    assert typed == lazy
    assert sorted(tawq_core.__all__) == sorted([name for _, name in lazy] + ["__version__"])


def _fake_torch_npu(root: Path) -> Path:
    """A distribution registering a torch device extension that fails to load the way torch_npu does on a
    machine without Ascend CANN (a stand-in: torch_npu itself cannot be installed here)."""
    (root / "fake_torch_npu.py").write_text(
        "def autoload():\n"
        "    raise OSError('libhccl.so: cannot open shared object file: No such file or directory')\n")
    info = root / "fake_torch_npu-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-torch-npu\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[torch.backends]\nfake_npu = fake_torch_npu:autoload\n")
    return root


def test_the_command_turns_torch_npu_autoload_off_for_itself(tmp_path):
    env = _env(PYTHONPATH=str(_fake_torch_npu(tmp_path)))
    library = subprocess.run([sys.executable, "-c", "import tawq_core, torch"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert library.returncode != 0 and "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in library.stderr  # the stand-in bites
    told = subprocess.run([sys.executable, "-c", "import tawq_core, torch"], capture_output=True, text=True,
                          env={**env, "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}, timeout=120)
    assert told.returncode == 0, told.stderr  # what docs/backends.md tells library users to set
    command = subprocess.run([sys.executable, "-m", "tawq_core.cli", "plugins"], capture_output=True, text=True,
                             env=env, timeout=240)
    assert command.returncode == 0, command.stderr
    assert "FAILED" not in command.stdout + command.stderr  # without the switch every plugin fails to import
    assert re.search(r"^backend\s+cpu\s.*\savailable$", command.stdout, re.MULTILINE), command.stdout
