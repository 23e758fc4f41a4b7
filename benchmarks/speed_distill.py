"""Does caching the teacher's logits pay off? The teacher forward's share of a distilled QAT step.

The default preset's network (1-D SEW-ResNet (1,1)x48, T = 4, batch 128, MNIST-1D shape) fine-tuned
with tawq: one full distilled training step (student forward + backward + AdamW, teacher forward under
inference mode) and the teacher forward alone, timed in turns (`speed_timing.interleaved`). Caching the
teacher's logits per sample would save at most the teacher forward on every epoch after the first, i.e.
``share * (E - 1) / E`` of the fine-tuning time for E epochs; it also needs an index-returning dataset
and breaks with any random augmentation or encoding, so it is only worth it when the share is large.

    .venv/bin/python benchmarks/speed_distill.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform

import torch
from speed_timing import interleaved, load_average, summary

import tawq_core
from tawq_core.training.distill import DistillationLoss, teacher_logits

T, BATCH, EPOCHS = 4, 128, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the default preset uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = tawq_core.create("model", "sew-resnet", num_classes=10, sample_shape=(1, 40), layers=[1, 1], width=48)
    student = copy.deepcopy(teacher)
    tawq_core.quantize(student, "tawq", T)
    teacher.eval()
    x = torch.randn(T, BATCH, 1, 40)
    y = torch.randint(0, 10, (BATCH,))
    loss_fn = DistillationLoss(torch.nn.CrossEntropyLoss(label_smoothing=0.1), 0.5, 2.0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn(student(x), y, teacher_logits(lambda: teacher(x)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def teacher_only() -> None:
        teacher_logits(lambda: teacher(x))

    ms = interleaved({"distilled step": step, "teacher forward": teacher_only}, warmup=3, repeats=args.repeats)
    stats = {name: summary(values) for name, values in ms.items()}
    share = stats["teacher forward"]["median"] / stats["distilled step"]["median"]
    result = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "load_average": load_average(), "batch": BATCH, "timesteps": T, "ms": stats,
              "teacher_share": round(share, 3),
              f"max_saving_{EPOCHS}_epochs": round(share * (EPOCHS - 1) / EPOCHS, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
