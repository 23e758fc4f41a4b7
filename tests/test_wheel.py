"""#18.6: the built wheel holds every package of the source tree. `pyproject.toml` lists packages
explicitly, and an editable install finds any folder, so a package missing from the list shows only once
tawq is installed from a wheel: this test builds one, installs it into a folder of its own and imports
every subpackage from there, in an interpreter that sees no source tree and no editable install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: import name -> source folder (pyproject's package-dir)
SOURCES = {"tawq_core": "tawq_core", "tawq_plugins": "plugins", "tawq_backends": "backends"}

IMPORT_ALL = """
import importlib, importlib.resources, json, sys
names, target = json.loads(sys.argv[1]), sys.argv[2]
outside = [n for n in names if not importlib.import_module(n).__file__.startswith(target)]
from tawq_core.measure.energy import energy_models
print(json.dumps({"outside": outside, "energy_models": sorted(energy_models()),
                  "presets": sorted(p.name for p in importlib.resources.files("tawq_presets").iterdir()
                                    if p.name.endswith(".toml"))}))
"""


def _packages() -> list[str]:
    """Every package of the source tree (a folder with an ``__init__.py``), by import name."""
    found = []
    for name, folder in SOURCES.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                found.append(".".join((name, *parts)))
    return found


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--no-deps", "--disable-pip-version-check"],
                   check=True, capture_output=True, text=True)


@pytest.mark.slow
def test_the_wheel_holds_every_package(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    for path in ("pyproject.toml", "README.md", *SOURCES.values(), "benchmarks/presets"):
        if (ROOT / path).is_dir():
            shutil.copytree(ROOT / path, source / path,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / path, source / path)
    _pip("wheel", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source))
    (wheel,) = (tmp_path / "dist").glob("tawq-*.whl")
    target = tmp_path / "installed"
    _pip("install", "--target", str(target), str(wheel))

    # -S: no site-packages .pth files, so the editable install's finder stays out; the venv's
    # site-packages on PYTHONPATH provide torch and the other dependencies.
    packages = _packages()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", IMPORT_ALL, json.dumps(packages), str(target)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outside"] == []
    assert report["energy_models"] and report["presets"]  # package data came along
    assert {"tawq_core.measure", "tawq_core.plugin_api", "tawq_plugins.quantizers"} <= set(packages)
