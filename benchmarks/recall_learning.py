"""How fast each core learns to recall, supervised: the memory suite's RepeatPrevious (or RepeatFirst) without RL.

The task is POPGym's RepeatPrevious as a sequence-labelling problem: a stream of 52 random symbols out of 4
(one-hot), and at step t the target is the symbol of step t - 4. Each core (no RL, no critic) reads the
stream and a linear head predicts the target; trained with Adam and gradient clipping at 1, on chunks of 16
steps whose state is carried over and detached (as ``RimPPO`` trains), batches of 16 sequences. Printed:
per core, the number of updates until the held-out accuracy first reaches ``--threshold`` (median and every
seed) and the final accuracy. This separates "the core learns recall slowly" from "the RL agent learns it
slowly" (advantage noise, the critic). Measured (the default command, 3 seeds, updates to 0.95): LSTM 275 /
275 / 300, ``rim-k6`` 250 / 275 / 300, ``rim`` 350 / not within 600 / not within 600 (final accuracy 0.99,
0.85, 0.86): the competition among mechanisms slows learning to recall. ``--cores rim rim-nocomm rim-h1``:
``rim-nocomm`` never / 450 / 425, ``rim-h1`` 500 / 600 / 450 (more reliable than the defaults, slower than the
LSTM); ``--cores rim-noqb``: never / never / never (0.94, 0.86, 0.81).

``--task first`` is POPGym's RepeatFirst instead (every target is the first symbol). With chunks of 16 nothing
beyond the first chunk gets a gradient, so no core reaches 0.95 in 600 updates; final accuracy (chance 0.25):
``lstm`` 0.51 / 0.50 / 0.27, ``rim`` 0.28 / 0.27 / 0.27, ``rim-k6`` 0.24 / 0.27 / 0.27; seeds 0-1: ``rim-h1``
0.52 / 0.49, ``rim-noqb`` 0.47 / 0.51.

Run (one torch thread)::

    python benchmarks/recall_learning.py                       # LSTM, RIM defaults, RIM with all active; 3 seeds
    python benchmarks/recall_learning.py --cores rim rim-k6 --seeds 0 1 --lr 1.4e-3
    python benchmarks/recall_learning.py --task first --cores lstm rim rim-k6        # RepeatFirst

Cores: ``lstm`` an ``nn.LSTM`` of 64 (the memory suite's); ``rim`` the RL policies' default RIM at the suite's
size (6 mechanisms of 10, 5 active, 4 input heads, input values 4 x 10); ``rim-k6`` the same with all six
active (no competition); ``rim-k4`` four of six; ``rim-nocomm`` the defaults without communication between
mechanisms; ``rim-h1`` the defaults with one input-attention head instead of four; ``rim-noqb`` the defaults
without the input queries' bias (``query_bias=False``). All initialised by
``cores.orthogonal_init_``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rims_rl.core import RIM
from rims_rl.rl.cores import orthogonal_init_, resolve_rim_kwargs

LAG, SYMBOLS, LENGTH, CHUNK, BATCH = 4, 4, 52, 16, 16
CORES = ("lstm", "rim", "rim-k6", "rim-k4", "rim-nocomm", "rim-h1", "rim-noqb")


TASKS = ("previous", "first")


def first_target(task: str) -> int:
    """The first step with a target: LAG for ``previous``, 1 for ``first``."""
    return LAG if task == "previous" else 1


def make_batch(batch: int, generator: torch.Generator, task: str = "previous") -> tuple[torch.Tensor, torch.Tensor]:
    """:param task: ``previous`` (the target is the symbol LAG steps earlier, POPGym's RepeatPrevious) or ``first``
        (the first symbol of the sequence, RepeatFirst)
    :return: one-hot symbols [T, B, 4] and targets [T, B] (-100 before :func:`first_target`)"""
    symbols = torch.randint(0, SYMBOLS, (LENGTH, batch), generator=generator)
    targets = torch.full((LENGTH, batch), -100, dtype=torch.long)
    if task == "previous":
        targets[LAG:] = symbols[:-LAG]
    else:
        targets[1:] = symbols[:1]
    return nn.functional.one_hot(symbols, SYMBOLS).float(), targets


def make_core(name: str) -> tuple[nn.Module, int]:
    """:return: the core (time-major) and its output size"""
    if name == "lstm":
        return orthogonal_init_(nn.LSTM(SYMBOLS, 64)), 64
    kwargs = resolve_rim_kwargs(None, 64, 1)  # what MlpRimPolicy(lstm_hidden_size=64) builds: 6 x 10
    if name == "rim-nocomm":
        kwargs["use_communication"] = False
    elif name == "rim-h1":
        kwargs["num_input_heads"] = 1
    elif name == "rim-noqb":
        kwargs["query_bias"] = False
    elif name != "rim":
        kwargs["k_active"] = int(name.removeprefix("rim-k"))
    hidden = kwargs.pop("hidden_size")
    return orthogonal_init_(RIM(SYMBOLS, hidden, **kwargs)), kwargs["num_units"] * hidden


def run_core(core: nn.Module, xs: torch.Tensor, state):
    """:return: outputs [T, B, S] and the final state"""
    if isinstance(core, nn.LSTM):
        return core(xs, state)
    out, state, _ = core(xs, state)
    return out.flatten(2), state


def train(name: str, seed: int, updates: int, lr: float, threshold: float, every: int, task: str = "previous") -> dict:
    """Train one core; :return: ``updates_to_threshold`` (None if never), ``final_accuracy``, ``seconds``"""
    torch.manual_seed(seed)
    core, size = make_core(name)
    head = nn.Linear(size, SYMBOLS)
    params = [*core.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    data = torch.Generator().manual_seed(1000 + seed)
    test_x, test_y = make_batch(256, torch.Generator().manual_seed(999), task)
    reached, accuracy, start = None, 0.0, time.perf_counter()
    for update in range(1, updates + 1):
        xs, ys = make_batch(BATCH, data, task)
        state = None
        for i in range(0, LENGTH, CHUNK):
            out, state = run_core(core, xs[i : i + CHUNK], state)
            state = tuple(s.detach() for s in state)
            loss = nn.functional.cross_entropy(head(out).flatten(0, 1), ys[i : i + CHUNK].flatten(), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        if update % every == 0:
            with torch.no_grad():
                out, _ = run_core(core, test_x, None)
                accuracy = (head(out).argmax(-1) == test_y)[first_target(task) :].float().mean().item()
            if reached is None and accuracy >= threshold:
                reached = update
    return dict(updates_to_threshold=reached, final_accuracy=accuracy, seconds=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", nargs="+", default=["lstm", "rim", "rim-k6"], choices=CORES)
    parser.add_argument("--task", default="previous", choices=TASKS, help="the symbol LAG steps back or the first")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=600, help="updates (batches of 16 sequences) per run")
    parser.add_argument("--lr", type=float, default=7e-4, help="Adam learning rate (the memory suite's)")
    parser.add_argument("--threshold", type=float, default=0.95, help="held-out accuracy to reach")
    parser.add_argument("--every", type=int, default=25, help="evaluate every this many updates")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"recall {args.task} (lag {LAG}, {SYMBOLS} symbols, {LENGTH} steps, chunks of {CHUNK}), lr {args.lr}, "
        f"{args.updates} updates, seeds {args.seeds}; updates until held-out accuracy >= {args.threshold}"
    )
    for name in args.cores:
        results = [
            train(name, seed, args.updates, args.lr, args.threshold, args.every, args.task) for seed in args.seeds
        ]
        reached = [r["updates_to_threshold"] for r in results]
        known = [r for r in reached if r is not None]
        median = statistics.median(known) if len(known) == len(reached) else "never (some seeds)"
        accuracy = [round(r["final_accuracy"], 3) for r in results]
        seconds = statistics.median(r["seconds"] for r in results)
        print(
            f"{name:8s} updates to {args.threshold}: median {median}, per seed {reached}; "
            f"final accuracy {accuracy}; {seconds:.0f} s/run",
            flush=True,
        )


if __name__ == "__main__":
    main()
