"""The deployed layers' integer product is chosen by a measured probe, or set by TAWQ_INT8_GEMM."""

import pytest

from tawq_backends.kernels import gemm_choice


@pytest.fixture(autouse=True)
def _fresh():
    gemm_choice.choice.cache_clear()
    yield
    gemm_choice.choice.cache_clear()


@pytest.mark.parametrize(("setting", "int8"), [("on", True), ("off", False), ("OFF", False)])
def test_the_setting_skips_the_probe(setting, int8, monkeypatch):
    monkeypatch.setenv(gemm_choice.ENV, setting)
    assert gemm_choice.choice() == gemm_choice.GemmChoice(int8, f"{gemm_choice.ENV}={setting.lower()}")


def test_the_probe_records_what_it_measured(monkeypatch):
    monkeypatch.delenv(gemm_choice.ENV, raising=False)
    made = gemm_choice.choice()
    assert made.why.startswith("probe [64x256]x[256x128]: int8 ") and " ms, float32 " in made.why
    int8_ms, fp32_ms = (float(part.split()[-2]) for part in made.why.split(": ")[1].split(", "))
    assert made.int8 == (int8_ms < fp32_ms)
    assert gemm_choice.choice() is made  # once per process
