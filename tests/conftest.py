"""Shared fixtures: installing the fixture plugin distributions and running the real CLI."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
#: The shipped plugin template doubles as the test suite's well-behaved third-party plugin.
EXAMPLE = Path(__file__).parent.parent / "examples" / "tawq-example"


def _pip_install_target(source: Path, target: Path) -> Path:
    """Install a plugin distribution for real (wheel build + dist-info) into an isolated folder.

    Built from a copy, so the build leaves nothing in the source tree (two runs may install at once).
    """
    source = Path(shutil.copytree(source, target.with_name(target.name + "-src"),
                                  ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )
    return target


@pytest.fixture(scope="session")
def example_plugin_path(tmp_path_factory) -> Path:
    """Folder holding the installed `tawq-example` distribution (put it on PYTHONPATH to activate)."""
    return _pip_install_target(EXAMPLE, tmp_path_factory.mktemp("tawq-example"))


@pytest.fixture(scope="session")
def broken_plugin_path(tmp_path_factory) -> Path:
    return _pip_install_target(FIXTURES / "tawq-broken", tmp_path_factory.mktemp("tawq-broken"))


@pytest.fixture(scope="session")
def clash_plugin_path(tmp_path_factory) -> Path:
    """`tawq-clash`: registers `example-pow2`, the name tawq-example registers too."""
    return _pip_install_target(FIXTURES / "tawq-clash", tmp_path_factory.mktemp("tawq-clash"))


def run_tawq(*args: str, extra_path: list[Path] | None = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `tawq` CLI in a fresh interpreter (so entry points are re-read)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAWQ_")}
    if extra_path:
        full_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_path)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tawq_core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture(scope="session")
def tawq_cli():
    return run_tawq


@pytest.fixture
def quick_collections():
    """The cpu backend's peak-memory meter runs a full `gc.collect()` per bench cell; in a test process
    holding everything pytest imported that is ~0.3 s each. Objects alive before the test are left out of
    collections (`gc.freeze`): a collection still frees everything the test itself dropped. Folders that
    run benches request it."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def one_thread():
    """One torch thread for in-process work: tiny tensors gain nothing from intra-op threads, and on a shared
    2-core runner two contending threads lose a lot. Folders of tiny models request it autouse."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
