"""A broken third-party plugin cannot break tawq: `tawq bench` and `tawq train` on built-ins still work with
the deliberately broken `tawq-broken` distribution installed (tests/fixtures/tawq-broken: an import error, a
hook that raises, a name taken from a built-in, a misspelled hook), and TAWQ_DISABLE_PLUGINS removes it.
`tawq plugins` naming each failure and its reason is in test_bad_inputs.py."""

from __future__ import annotations

import pytest
from cli_helpers import assert_one_line_error
from robustness_helpers import run_many

pytestmark = pytest.mark.slow  # real `tawq` processes with the tawq-broken distribution installed


def test_bench_on_builtins_works_with_broken_plugins_installed(bench_runs):
    run = bench_runs.reference  # made with tawq-broken on PYTHONPATH
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "| fp32 (torch dense) | cpu |" in run.stdout and "| fp32 (spike-driven) | cpu |" in run.stdout
    for record in run.results()["records"]:
        # tawq-broken registers its own "fp32": the built-in keeps the name
        assert set(record["provenance"]["plugins"].values()) == {f"tawq {record['provenance']['tawq']}"}


def test_train_on_builtins_works_with_broken_plugins_installed(train_replicates):
    _, with_broken = train_replicates
    assert with_broken.train.returncode == 0 and "Traceback" not in with_broken.train.stderr
    assert "mlp on digits with tawq: test accuracy" in with_broken.train.stdout
    assert with_broken.export.returncode == 0, with_broken.export.stderr
    # identical to the run without the broken plugins: test_reproducibility.py compares the two bit for bit


def test_disabling_the_broken_distribution(broken_plugin_path):
    disabled = {"extra_path": [broken_plugin_path], "env": {"TAWQ_DISABLE_PLUGINS": "tawq-broken"}}
    results = run_many({"listing": {"args": ["plugins"], **disabled},
                        "unknown": {"args": ["bench", "--quantizers", "never-seen", "--quiet"], **disabled}})
    listing = results["listing"]
    assert listing.returncode == 0 and "FAILED" not in listing.stderr
    skipped = sorted(line.split()[1] for line in listing.stderr.splitlines() if line.startswith("skipped "))
    assert skipped == ["argparse-at-import", "duplicate", "exits-at-import", "fine", "hook-raises", "import-error",
                       "misspelled", "prints-at-import", "runtime"]
    assert "disabled by TAWQ_PLUGINS/TAWQ_DISABLE_PLUGINS" in listing.stderr
    assert "broken-dist-ok" not in listing.stdout and " fp32 " in listing.stdout
    line = assert_one_line_error(results["unknown"], "unknown quantizer 'never-seen'")
    assert "failed to load" not in line  # nothing failed: no hint pointing at `tawq plugins`
