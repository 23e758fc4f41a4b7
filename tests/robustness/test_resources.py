"""Memory limits: a training run that obviously cannot fit is refused in one line before it starts (estimated
on the meta device, nothing allocated); one that is close is warned about; an OOM is a one-line error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tawq_core import ConfigError, create, quantize
from tawq_core.bench import load_preset
from tawq_core.training.resources import (
    activation_bytes,
    check_training_memory,
    dataset_bytes,
    estimate_training_memory,
    meminfo_available,
    out_of_memory_as_config_error,
)

GIB = 2**30


def _paper_model(batch_size: int):
    """imagenet-spikingformer-8-384 exactly as its preset builds it, but on the meta device."""
    cfg = load_preset("imagenet-spikingformer-8-384")
    with torch.device("meta"):
        model = create("model", cfg.model, num_classes=1000, sample_shape=(3, 224, 224), **cfg.model_options)
    quantize(model, "tawq", cfg.timesteps)
    return cfg, model


@pytest.mark.slow  # twelve meta-device forwards of the full imagenet-spikingformer-8-384
def test_paper_preset_at_its_batch_is_refused_from_a_meta_estimate():
    cfg, model = _paper_model(512)
    assert all(p.is_meta for p in model.parameters())
    batch = cfg.train_config(0).batch_size
    with pytest.raises(ConfigError) as info:
        check_training_memory(model, (3, 224, 224), cfg.timesteps, batch, "cpu", available=64 * GIB)
    message = str(info.value)
    assert "\n" not in message
    for words in ("training needs ~", "GiB (activations ", "at batch 512, T=4", "more than the 64.0 GiB free",
                  "use a smaller --batch-size (now 512) or a smaller model"):
        assert words in message
    # the same model at a batch that fits: checked, allowed, and the activations scale with the batch
    estimate = check_training_memory(model, (3, 224, 224), cfg.timesteps, 8, "cpu", available=64 * GIB)
    assert estimate is not None and estimate.training < 16 * GIB
    at_512 = estimate_training_memory(model, (3, 224, 224), 4, 512)
    assert 50 * estimate.activations < at_512.activations
    # float16 autocast (CUDA's default): activations counted at half size, still a lower bound
    assert estimate_training_memory(model, (3, 224, 224), 4, 512, amp=True).activations == at_512.activations // 2


def test_activations_scale_with_batch_and_timesteps():
    model = create("model", "sew-resnet", num_classes=10, sample_shape=(1, 40), layers=[1, 1, 1], width=8)
    one = activation_bytes(model, (2, 4, 1, 40))
    assert one > 0
    assert activation_bytes(model, (2, 8, 1, 40)) == 2 * one  # every activation has a batch axis
    assert 1.99 * one < activation_bytes(model, (4, 4, 1, 40)) < 2 * one  # all but the logits have a time axis
    assert all(not p.is_meta for p in model.parameters())  # the real model is left as it was


def test_estimate_stays_below_a_real_training_step():
    """The refusal must never hit a run that would have fitted: the estimated activations are at most what
    one real forward + backward + AdamW step adds to the process's peak RSS."""
    backend = create("backend", "cpu")
    model = create("model", "sew-resnet", num_classes=10, sample_shape=(1, 40), layers=[1, 1, 1], width=32)
    x, y = torch.randn(4, 64, 1, 40), torch.randint(0, 10, (64,))
    optimizer = torch.optim.AdamW(model.parameters())
    for _ in range(2):  # the second step: optimizer state exists, as it does for every step but the first
        with backend.peak_memory() as memory:
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    if memory.result.value is None:
        pytest.skip(f"peak RSS not measurable here: {memory.result.method}")
    estimate = estimate_training_memory(model, (1, 40), 4, 64)
    assert estimate.activations <= memory.result.value


def test_close_is_a_warning_far_is_silent():
    model = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16, 16])
    need = estimate_training_memory(model, (1, 8, 8), 2, 64).training
    lines: list[str] = []
    assert check_training_memory(model, (1, 8, 8), 2, 64, "cpu", log=lines.append, available=100 * need)
    assert lines == []
    check_training_memory(model, (1, 8, 8), 2, 64, "cpu", log=lines.append, available=int(need / 0.7))
    (line,) = lines
    assert line.startswith("warning: training needs ~") and "70% of the" in line and "smaller --batch-size" in line
    with pytest.raises(ConfigError, match=r"more than the .* free; use a smaller --batch-size \(now 64\)"):
        check_training_memory(model, (1, 8, 8), 2, 64, "cpu", available=need - 1)


class _HostSideForward(nn.Module):
    """A third-party model that reads tensor values in forward: it cannot run on the meta device."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(x).mean(0) * float(x.abs().max())


def test_a_model_that_cannot_run_on_meta_is_trained_unchecked():
    lines: list[str] = []
    assert check_training_memory(_HostSideForward(), (4,), 2, 8, "cpu", log=lines.append, available=1) is None
    (line,) = lines
    assert line.startswith("memory check skipped: the model's forward does not run on the meta device")


def test_dataset_bytes_are_counted_where_known():
    splits = create("dataset", "digits")
    expected = sum(t.numel() * t.element_size() for d in (splits.train, splits.test) for t in (d.x, d.y))
    assert dataset_bytes(splits.train, splits.test) == expected
    assert dataset_bytes(torch.utils.data.Subset(splits.train, [0, 1])) == dataset_bytes(splits.train)
    assert dataset_bytes(object()) is None  # lazily decoded files: unknown
    model = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16])
    estimate = estimate_training_memory(model, (1, 8, 8), 2, 64, datasets=(splits.train, splits.test))
    assert estimate.dataset == expected and "dataset in RAM" in estimate.describe()


def test_meminfo_available(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n")
    assert meminfo_available(meminfo) == 8_000_000 * 1024
    assert meminfo_available(tmp_path / "absent") is None


def test_default_bench_model_needs_far_less_than_4_gib():
    cfg = load_preset("default")
    model = create("model", cfg.model, num_classes=10, sample_shape=(1, 40), **cfg.model_options)
    estimate = estimate_training_memory(model, (1, 40), cfg.timesteps, cfg.train_config(0).batch_size)
    assert estimate.training < 256 * 2**20


def test_bench_refuses_before_training_when_memory_is_short(tiny_preset_file, tmp_path, monkeypatch, capsys):
    from tawq_core import cli
    from tawq_core.training import resources

    monkeypatch.setattr(resources, "available_memory", lambda device: (64 * 1024, "a stand-in reading"))
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--preset", str(tiny_preset_file), "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "more than the 64 KiB free (a stand-in reading); use a smaller --batch-size (now 64)" in err
    assert not list(out.glob("cache/models/*"))  # refused before anything was trained


def test_out_of_memory_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="out of device memory while training at batch 512; use a smaller"):
        with out_of_memory_as_config_error(512):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    with pytest.raises(ConfigError, match="out of memory while training at batch 64"):
        with out_of_memory_as_config_error(64):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(RuntimeError, match="unrelated"), out_of_memory_as_config_error(64):
        raise RuntimeError("unrelated")


# -- #19 class 7: the estimate costs the same at any T ----------------------------------------------------
@pytest.mark.parametrize(("name", "options", "quantizer"), [
    ("mlp", {"hidden": [32, 32]}, "tawq"), ("sew-resnet", {}, "ptq8"),
])
def test_activations_extrapolated_from_three_timesteps_equal_the_direct_count(name, options, quantizer):
    from tawq_core.nn.quantization import set_timesteps
    from tawq_core.training.resources import activation_bytes_at

    shape = (1, 8, 8) if name == "mlp" else (1, 16, 16)
    model = create("model", name, num_classes=10, sample_shape=shape, **options)
    if quantizer:
        quantize(model, create("quantizer", quantizer), 4)
    for T in (4, 9):
        estimated = activation_bytes_at(model, T, (2, *shape))  # measured at T = 1, 2, 3 only
        if quantizer:
            set_timesteps(model, T)
        assert estimated == activation_bytes(model, (T, 2, *shape))  # exact, not approximate
        if quantizer:
            set_timesteps(model, 4)
    assert {layer.timesteps for layer in model.modules() if hasattr(layer, "quantizer")} <= {4}  # restored


def test_a_million_timesteps_is_refused_without_running_a_million_steps(monkeypatch):
    """The issue's example (T = 10^6 hung in the estimate): the forward passes it runs never exceed T = 3."""
    import tawq_core.training.resources as resources

    model = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16, 16])
    quantize(model, create("quantizer", "tawq"), 1_000_000)
    seen: list[int] = []
    real = resources.activation_bytes
    monkeypatch.setattr(resources, "activation_bytes", lambda m, shape, *a: seen.append(shape[0]) or real(m, shape, *a))
    with pytest.raises(ConfigError, match=r"at batch 64, T=1000000.*fewer timesteps \(now 1000000\)"):
        check_training_memory(model, (1, 8, 8), 1_000_000, 64, "cpu", available=16 * GIB)
    assert seen == [1, 2, 3]


def test_an_absurd_size_is_refused_even_where_free_memory_is_unknown():
    model = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16, 16])
    with pytest.raises(ConfigError, match=r"more than any single device holds \(1024.0 GiB\).*fewer timesteps"):
        check_training_memory(model, (1, 8, 8), 10**9, 64, "meta")  # meta: free memory not known
    assert check_training_memory(model, (1, 8, 8), 4, 64, "meta") is not None  # a normal size goes on
