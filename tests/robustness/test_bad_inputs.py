"""The bad-input catalogue: every mistake a user can make gets one line saying what is wrong and what to do.

Each case runs the real CLI entry point (`tawq_core.cli.main`, what the console script calls) where a CLI
path exists and checks: exit code 2, exactly one line on stderr, no traceback (without --debug), the key
words of the message, and that files an earlier run left in the output folder are unchanged. The cases run
in this interpreter, once each, in one module-scoped fixture; the few that need a fresh interpreter
(installed plugin distributions, a torch_npu the probe's child process imports) run side by side as real
`tawq` processes and are marked slow.
docs/robustness.md lists each case with the message a user sees.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import sys
import traceback
from pathlib import Path

import pytest
import torch
from cli_helpers import InProcess, assert_one_line_error, cli_in_process
from robustness_helpers import TINY_PRESET, assert_kept, file_hashes, run_many

from tawq_core import create, save_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "datasets"))
from dataset_writers import write_nmnist_bin, write_shd  # noqa: E402

TRAIN = ("train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--timesteps", "2",
         "--no-progress", "--model-option", "hidden=[16]")
MLP_OPTIONS = {"num_classes": 10, "sample_shape": [1, 8, 8], "hidden": [16]}


def _replace(args: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    i = args.index(flag)
    return (*args[:i + 1], value, *args[i + 2:])


def _inputs(root: Path) -> dict[str, Path]:
    """Files the cases feed the CLI: damaged datasets, checkpoints, presets, a stand-in torch_npu."""
    paths = {"data": root / "data", "missing": root / "no-such-data", "blocker": root / "a-file"}
    write_shd(paths["data"] / "SHD" / "shd_train.h5", [([0.1, 0.2], [1, 2], 3)] * 4)
    (paths["data"] / "SHD" / "shd_test.h5").write_bytes(b"\x89HDF\r\n\x1a\n cut short by a failed download")
    for split in ("Train", "Test"):
        for digit in range(10):
            write_nmnist_bin(paths["data"] / "NMNIST" / split / str(digit) / "00001.bin",
                             [(3, 5, 1, 0), (33, 33, 0, 1000 * digit), (1, 2, 1, 20_000)])
    short = paths["data"] / "NMNIST" / "Train" / "4" / "00001.bin"
    short.write_bytes(short.read_bytes()[:-3])
    paths["blocker"].write_text("a regular file where a folder is expected\n")

    model = create("model", "mlp", **{**MLP_OPTIONS, "sample_shape": (1, 8, 8)})
    paths["checkpoint"] = save_checkpoint(root / "good" / "model.safetensors", model, {"model": "mlp",
                                                                                       "model_options": MLP_OPTIONS})
    paths["truncated"] = root / "truncated.safetensors"
    paths["truncated"].write_bytes(paths["checkpoint"].read_bytes()[:300])
    wider = create("model", "mlp", **{**MLP_OPTIONS, "sample_shape": (1, 8, 8), "hidden": [24]})
    paths["other"] = save_checkpoint(root / "other.safetensors", wider, {"model": "mlp", "model_options": MLP_OPTIONS})
    paths["marker"] = root / "pickle-payload-ran"
    paths["pickle"] = root / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(str(paths["marker"]))}, paths["pickle"])

    paths["bad_toml"] = root / "broken.toml"
    paths["bad_toml"].write_text('dataset = "digits"\nmodel = mlp\nquantizers = ["tawq"]\n')
    paths["unknown_neuron"] = root / "neuron-typo.toml"
    paths["unknown_neuron"].write_text(TINY_PRESET.replace("threads = 1\n", 'threads = 1\nneuron = "nope"\n'))
    paths["unknown_key"] = root / "typo.toml"
    paths["unknown_key"].write_text('dataset = "digits"\nmodel = "mlp"\ntimesteps = 2\nquantizers = ["tawq"]\n'
                                    'epoch = 3\n')
    npu = root / "stand-in-torch-npu" / "torch_npu"  # torch_npu installed, Ascend CANN missing
    npu.mkdir(parents=True)
    (npu / "__init__.py").write_text(
        '"""Stand-in for torch_npu on a machine without Ascend CANN: importing it fails like the real one."""\n'
        'raise ImportError("libhccl.so: cannot open shared object file: No such file or directory")\n')
    paths["npu_stand_in"] = npu.parent
    return paths


class _Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _earlier_output(kind: str, inputs: dict[str, Path], where: Path) -> Path:
    """What a previous, successful run left in an output folder, which a failing command must not touch."""
    if kind == "train":
        where.mkdir(parents=True)
        shutil.copy(inputs["checkpoint"], where / "model.safetensors")
        (where / "summary.json").write_text(json.dumps({"test_accuracy": 0.9}) + "\n")
    elif kind == "bench":
        run = where / "tiny-0123456789ab"
        run.mkdir(parents=True)
        (where / "cache" / "cells").mkdir(parents=True)  # the cache every run under --out shares
        (run / "results.json").write_text(json.dumps({"complete": True, "records": []}) + "\n")
        (where / "cache" / "cells" / "abc.json").write_text(
            json.dumps({"kind": "cells", "key": "abc", "record": {"top1": 91.5}}) + "\n")
    else:  # export: the file --out names
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(b"an earlier export\n")
    return where


#: Cases a fresh interpreter must run: the plugin distributions on their PYTHONPATH (entry points are read
#: once per process), the stand-in torch_npu importable by the probe's child process.
IN_A_PROCESS = {"name-of-a-plugin-that-failed", "plugins-listing", "npu-without-cann"}
#: Stands for the tawq-broken distribution's install folder in a case's extra_path (installed only if run).
BROKEN = Path("<tawq-broken>")


def _cases(inputs: dict[str, Path], tiny_preset_file: Path) -> dict[str, tuple]:
    """{case: (command kind, args, options)}; options: "out" (an --out that cannot be made), "extra_path"
    (BROKEN: the installed tawq-broken distribution)."""
    bench = ("bench", "--preset", str(tiny_preset_file), "--quiet")
    export = ("export", str(inputs["checkpoint"]), "--format", "tawq")
    return {
        "unknown-quantizer": ("bench", (*bench, "--quantizers", "tawq,nope"), {}),
        "unknown-model": ("bench", (*bench, "--model", "nope"), {}),
        "unknown-neuron": ("bench", _replace(bench, "--preset", str(inputs["unknown_neuron"])), {}),
        "unknown-dataset": ("train", _replace(TRAIN, "--dataset", "nope"), {}),
        "unknown-backend": ("train", (*TRAIN, "--backend", "nope"), {}),
        "name-of-a-plugin-that-failed": ("train", (*TRAIN, "--quantizer", "never-seen"),
                                         {"extra_path": [BROKEN]}),
        "dataset-directory-missing": ("train", (*_replace(TRAIN, "--dataset", "shd"), "--data-dir",
                                                str(inputs["missing"])), {}),
        "dataset-h5-corrupt": ("train", (*_replace(TRAIN, "--dataset", "shd"), "--data-dir", str(inputs["data"]),
                                         "--timesteps", "100"), {}),
        "dataset-bin-truncated": ("train", (*_replace(_replace(TRAIN, "--dataset", "nmnist"), "--batch-size", "2"),
                                            "--data-dir", str(inputs["data"]), "--dataset-option", "timesteps=2"),
                                  {}),
        "checkpoint-corrupt": ("export", _replace(export, "export", str(inputs["truncated"])), {}),
        "checkpoint-of-another-model": ("export", _replace(export, "export", str(inputs["other"])), {}),
        "checkpoint-pickle": ("export", _replace(export, "export", str(inputs["pickle"])), {}),
        "loss-nan": ("train", _replace(TRAIN, "--batch-size", "16") + ("--lr", "1e30"), {}),
        "timesteps-zero": ("bench", (*bench, "--timesteps", "0"), {}),
        "epochs-negative": ("bench", (*bench, "--epochs", "-1"), {}),
        "batch-size-zero": ("bench", (*bench, "--batch-size", "0"), {}),
        "npu-without-torch-npu": ("bench", (*bench, "--backend", "npu"), {}),
        "npu-without-cann": ("train", (*TRAIN, "--backend", "npu"), {"extra_path": [inputs["npu_stand_in"]]}),
        "preset-invalid-toml": ("bench", _replace(bench, "--preset", str(inputs["bad_toml"])), {}),
        "preset-unknown-key": ("bench", _replace(bench, "--preset", str(inputs["unknown_key"])), {}),
        "output-not-writable-bench": ("bench", bench, {"out": inputs["blocker"] / "results"}),
        "output-not-writable-train": ("train", TRAIN, {"out": inputs["blocker"] / "run"}),
        "plugins-listing": ("plugins", ("plugins",), {"extra_path": [BROKEN]}),
    }


def _prepare(cases: dict[str, tuple], inputs: dict[str, Path], root: Path) -> dict[str, tuple]:
    """Each case's full arguments, options and --out, with what an earlier run left there and its hashes:
    {case: (args, options, out, hashes)}."""
    prepared = {}
    for name, (kind, args, options) in cases.items():
        options = dict(options)
        out, before = options.pop("out", None), None
        if kind == "plugins":
            prepared[name] = (list(args), options, None, None)
            continue
        if out is None:
            out = _earlier_output(kind, inputs, root / "outputs" / (f"{name}.tawq" if kind == "export" else name))
            before = file_hashes(out.parent if kind == "export" else out)
        prepared[name] = ([*args, "--out", str(out)], options, out, before)
    return prepared


@pytest.fixture(scope="module")
def catalogue_inputs(tmp_path_factory, tiny_preset_file):
    root = tmp_path_factory.mktemp("catalogue")
    inputs = _inputs(root / "inputs")
    return inputs, _prepare(_cases(inputs, tiny_preset_file), inputs, root)


def _isolated(*args: str) -> InProcess:
    """`cli_in_process`, with an exception the CLI let through (a bug) recorded as a process would show it
    (exit 1, the traceback on stderr), so it fails its own case and not the whole catalogue."""
    try:
        return cli_in_process(*args)
    except Exception:  # noqa: BLE001 - reported by the case's own assertions
        return InProcess(1, "", traceback.format_exc())


@pytest.fixture(scope="module")
def catalogue(catalogue_inputs):
    """Every case that needs no fresh interpreter, through the CLI entry point in this process (one thread):
    {case: (result, inputs, output, hashes)}."""
    inputs, prepared = catalogue_inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {name: _isolated(*args) for name, (args, _, _, _) in prepared.items()
                   if name not in IN_A_PROCESS}
    finally:
        torch.set_num_threads(threads)
    return {name: (result, inputs, prepared[name][2], prepared[name][3]) for name, result in results.items()}


@pytest.fixture(scope="module")
def process_catalogue(catalogue_inputs, broken_plugin_path):
    """The cases of IN_A_PROCESS, each in a fresh `tawq` interpreter, side by side (one thread each)."""
    inputs, prepared = catalogue_inputs
    calls = {}
    for name in IN_A_PROCESS:
        args, options, _, _ = prepared[name]
        paths = [broken_plugin_path if p == BROKEN else p for p in options.get("extra_path", ())]
        calls[name] = {"args": args, "extra_path": paths}
    results = run_many(calls)
    return {name: (result, inputs, prepared[name][2], prepared[name][3]) for name, result in results.items()}


def check(catalogue, case: str, *words: str) -> str:
    """The one-line-error contract, plus: the earlier output is intact."""
    result, _, out, before = catalogue[case]
    line = assert_one_line_error(result, *words)
    if before is not None:
        assert_kept(out.parent if out.suffix == ".tawq" else out, before)
    return line


# -- unknown names ------------------------------------------------------------------------------------------
def test_unknown_quantizer(catalogue):
    check(catalogue, "unknown-quantizer", "unknown quantizer 'nope'", "known quantizers: binary, fp32")


def test_unknown_model(catalogue):
    check(catalogue, "unknown-model", "unknown model 'nope'", "known models:", "mlp", "sew-resnet")


def test_unknown_neuron(catalogue):
    check(catalogue, "unknown-neuron", "unknown neuron 'nope'", "known neurons: if, lif, plif")


def test_unknown_dataset(catalogue):
    check(catalogue, "unknown-dataset", "unknown dataset 'nope'", "known datasets:", "digits", "mnist1d")


def test_unknown_backend(catalogue):
    check(catalogue, "unknown-backend", "unknown backend 'nope'", "known backends: cpu, cuda, npu")


# -- plugins that fail --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_plugins_that_fail_to_import_raise_in_their_hook_or_take_a_taken_name_are_named(process_catalogue):
    listing, *_ = process_catalogue["plugins-listing"]  # `tawq plugins` with the tawq-broken distribution installed
    assert listing.returncode == 0 and "Traceback" not in listing.stderr
    failed = {line.split()[1]: line for line in listing.stderr.splitlines() if line.startswith("FAILED ")}
    assert "(tawq-broken 6.6.6)" in failed["import-error"]
    assert "No module named 'tawq_nonexistent_dependency'" in failed["import-error"]
    assert "raised in quantizer hook: RuntimeError: boom while registering" in failed["hook-raises"]
    assert "quantizer name 'fp32' is already registered by tawq" in failed["duplicate"]
    assert "this registration was ignored" in failed["duplicate"]
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert ["quantizer", "fp32", "tawq"] == rows[[r[:2] for r in rows].index(["quantizer", "fp32"])][:3]
    assert ["quantizer", "broken-dist-ok", "tawq-broken"] in [r[:3] for r in rows]  # its good module still loads
    # asking for a name that may have come from a failed plugin says so, and where to look
    check(process_catalogue, "name-of-a-plugin-that-failed", "unknown quantizer 'never-seen'",
          "plugin(s) failed to load (from tawq-broken)", "`tawq plugins` shows why")


# -- datasets -----------------------------------------------------------------------------------------------
def test_dataset_directory_missing(catalogue):
    check(catalogue, "dataset-directory-missing", "dataset 'shd'", "no-such-data/SHD/shd_train.h5 is missing",
          "get the files from https://", "--download")


def test_dataset_h5_corrupt(catalogue):
    check(catalogue, "dataset-h5-corrupt", "dataset 'shd': cannot read", "shd_test.h5",
          "corrupt or truncated, replace it with a fresh copy")


def test_dataset_bin_truncated_is_found_before_training(catalogue):
    check(catalogue, "dataset-bin-truncated", "dataset 'nmnist': cannot read", "Train/4/00001.bin",
          "(12 bytes is not a whole number of 5-byte events)", "corrupt or truncated, replace it with a fresh copy")


# -- checkpoints --------------------------------------------------------------------------------------------
def test_checkpoint_corrupt(catalogue):
    check(catalogue, "checkpoint-corrupt", "truncated.safetensors is corrupt or truncated", "save it again")


def test_checkpoint_of_another_model(catalogue):
    check(catalogue, "checkpoint-of-another-model", "does not fit this model",
          "shape mismatch: body.0.0.weight: checkpoint (24, 64) vs model (16, 64)",
          "rebuild the same model")


def test_checkpoint_pickle_is_refused_and_never_unpickled(catalogue):
    check(catalogue, "checkpoint-pickle", "evil.pt", "pickled Python objects, which tawq never loads (unsafe)",
          "save weights with safetensors")
    _, inputs, _, _ = catalogue["checkpoint-pickle"]
    assert not inputs["marker"].exists()


# -- training -----------------------------------------------------------------------------------------------
def test_divergence_stops_naming_the_weight_epoch_and_step(catalogue):
    """The weights are checked after every optimizer step (on CPU), so the first one to overflow is named
    before the loss turns NaN a step later."""
    line = check(catalogue, "loss-nan", "training diverged: weight '", "became non-finite after step ",
                 " of epoch 1/1", "lower the learning rate (lr=1e+30)", "gradient clipping")
    assert "inf of" in line


def test_timesteps_zero(catalogue):
    check(catalogue, "timesteps-zero", "timesteps must be an integer >= 1, got 0")


def test_negative_epochs(catalogue):
    check(catalogue, "epochs-negative", "epochs must be an integer >= 1, got -1")


def test_batch_size_zero(catalogue):
    check(catalogue, "batch-size-zero", "batch_size must be an integer >= 1, got 0")


# -- backends -----------------------------------------------------------------------------------------------
def test_npu_without_torch_npu(catalogue):
    if importlib.util.find_spec("torch_npu") is not None:
        pytest.skip("torch_npu is installed here")
    check(catalogue, "npu-without-torch-npu", "backend 'npu' is unavailable: torch_npu not installed",
          "pip install 'tawq[npu]'", "Ascend CANN")


@pytest.mark.slow
def test_npu_with_torch_npu_but_no_cann(process_catalogue):
    check(process_catalogue, "npu-without-cann", "backend 'npu' is unavailable",
          "torch_npu found but Ascend CANN libraries are missing (libhccl.so)", "install Ascend CANN")


# -- presets ------------------------------------------------------------------------------------------------
def test_preset_invalid_toml(catalogue):
    check(catalogue, "preset-invalid-toml", "broken.toml is not valid TOML", "line 2", "fix the syntax")


def test_preset_unknown_key(catalogue):
    check(catalogue, "preset-unknown-key", "typo.toml: unknown key 'epoch'", "known keys:", "timesteps, train")


# -- output folders -----------------------------------------------------------------------------------------
def test_output_not_writable_bench(catalogue):
    check(catalogue, "output-not-writable-bench", "a-file/results/tiny-", "is not writable (Not a directory)",
          "pass --out DIR with a writable path")


def test_output_not_writable_train(catalogue):
    check(catalogue, "output-not-writable-train", "cannot create output folder", "a-file/run", "Not a directory",
          "--out")
