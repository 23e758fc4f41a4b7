"""The experiment pipeline, written once: build -> quantize by policy -> calibrate -> train or fine-tune
(distillation included) -> evaluate (`produce`), then deploy (`deployed_forms`) -> measure
(`measure_form`). Each stage is a function with typed inputs and outputs; `tawq train`, `tawq eval`, the
bench and benchmarks/accuracy_study.py call them, and the bench adds only caching, the matrix and rendering.
"""

from tawq_core.pipeline.deployed import (
    DEPLOYED,
    SPIKE_DRIVEN,
    TORCH_DENSE,
    Form,
    agreement,
    deployed_forms,
    kernel_summary,
    layer_kernels,
)
from tawq_core.pipeline.measured import FormMeasurement, MeasureSpec, measure_form
from tawq_core.pipeline.produced import (
    Calibration,
    Data,
    ModelSource,
    ModelSpec,
    Produced,
    QatInit,
    QuantSpec,
    Recipe,
    Runtime,
    build_model,
    calibrate_model,
    evaluate_model,
    first_device,
    prepare,
    produce,
    quantize_model,
    reference_recipe,
    train_model,
)

__all__ = [
    "DEPLOYED", "SPIKE_DRIVEN", "TORCH_DENSE", "Calibration", "Data", "Form", "FormMeasurement", "MeasureSpec",
    "ModelSource", "ModelSpec", "Produced", "QatInit", "QuantSpec", "Recipe", "Runtime", "agreement",
    "build_model", "calibrate_model", "deployed_forms", "evaluate_model", "first_device", "kernel_summary",
    "layer_kernels", "measure_form", "prepare", "produce", "quantize_model", "reference_recipe", "train_model",
]
