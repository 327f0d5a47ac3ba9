"""Seconds per training step of the supervised tasks (the loop of ``scripts/train_supervised.py``:
sample a batch, loss, backward, clip, Adam), median over repeats, RIM against LSTM in one run.

Run: ``python benchmarks/supervised_step.py --task mnist --data-dir PATH/TO/MNIST [--device cuda]
[--batch-size 64] [--hp core.hidden_size=64] [--repeats 10] [--models rim,lstm]``

The paper's sequential MNIST sizes (RIM 6 x 100, k = 4, input values 400; LSTM 600), batch 128:
``--task mnist --batch-size 128 --hp core.hidden_size=100 core.input_value_size=400 core.lstm_hidden_size=600``.

Measures what ``train`` runs: denormals flushed, the RIM's loop compiled for training (``compile=true``,
the default; the warm-up steps pay the compilation, minutes on a CPU; ``--hp compile=false`` for eager).
Prints one line per model (median s/step, steps/s) and the RIM/LSTM ratio. Used to size runs:
``--steps`` for a run that must finish in a given time is about time / (s/step), plus evaluations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from rims_rl.tasks import TrainConfig
from rims_rl.tasks.training import compiles, flush_denormals, prepare_model, resolve_device, train_step
from rims_rl.utils.config import add_hp_argument, merge, parse_overrides


def step_time(config: TrainConfig, device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median seconds of one optimiser step of ``config``'s task and model on ``device``."""
    torch.manual_seed(config.seed)
    task = config.make_task()
    model = prepare_model(config, task.make_model().to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        loss, _ = train_step(task, model, optimizer, task.sample_batch(config.batch_size, gen), config.grad_clip)
        loss.item()  # waits for the GPU, as the training loop does
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="copying")
    p.add_argument("--models", default="rim,lstm")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data-dir")
    add_hp_argument(p, "core.hidden_size=64 options.train_gap=50")
    args = p.parse_args(argv)
    flush_denormals()  # as train() does, before torch's worker threads start
    try:
        device = resolve_device(args.device)
        overrides = parse_overrides(args.hp)
        if args.data_dir:
            overrides = merge(overrides, {"options": {"data_dir": args.data_dir}})
        torch.set_num_threads(args.threads)
        results = {}
        for model in args.models.split(","):
            config = TrainConfig.from_dict(
                merge({"task": args.task, "model": model, "batch_size": args.batch_size}, overrides)
            )
            results[model] = step_time(config, device, args.repeats)
            compiled = " (compiled)" if compiles(config) else ""
            print(
                f"{args.task} {model}{compiled} B={args.batch_size} {device}, {args.threads} thread(s): "
                f"{results[model]:.4f} s/step "
                f"({1 / results[model]:.1f} steps/s)",
                flush=True,
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "rim" in results and "lstm" in results:
        print(f"RIM / LSTM time per step: {results['rim'] / results['lstm']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
