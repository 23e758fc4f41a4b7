"""The shipped plugin template (examples/tawq-example): installed for real, its own tests pass, and the
code the README and docs/plugins.md show is taken verbatim from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "examples" / "tawq-example"
#: a fenced block whose first line names a template file: ``# examples/tawq-example/<path>`` [(excerpt)]
SNIPPET = re.compile(r"```(?:python|toml)\n# (examples/tawq-example/\S+)( \(excerpt\))?\n(.*?)```", re.S)


@pytest.mark.slow
def test_template_tests_pass_against_the_installed_plugin(example_plugin_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAWQ_")}
    env["PYTHONPATH"] = str(example_plugin_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                             str(TEMPLATE / "tests")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout[-500:]


@pytest.mark.parametrize("doc", ["README.md", "docs/plugins.md"])
def test_documented_snippets_are_verbatim_from_the_template(doc):
    snippets = SNIPPET.findall((ROOT / doc).read_text())
    assert snippets, f"{doc} shows no template code"
    for path, excerpt, code in snippets:
        source = (ROOT / path).read_text()
        if excerpt:
            assert code in source, f"{doc}: the excerpt of {path} is not verbatim"
        else:
            assert code == source, f"{doc}: the copy of {path} differs from the file"
