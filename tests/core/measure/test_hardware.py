"""Host facts recorded with results."""

from tawq_core.measure.hardware import cpu_model_name


def test_cpu_model_name_is_a_non_empty_single_line():
    name = cpu_model_name()
    assert name and "\n" not in name and name == name.strip()
