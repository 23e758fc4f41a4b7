"""Training: the loop (`loop`: `train`, `evaluate`), torchrun/DDP helpers, checkpoints and the resume
file, the memory estimate that refuses runs that cannot fit, distillation, the divergence guard and
progress output.

Named `training`, not `train`: `tawq_core.train` is the public training function. Importing this package
imports none of its modules (training is heavy; `import tawq_core` must stay cheap)."""
