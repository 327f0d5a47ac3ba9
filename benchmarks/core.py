"""Speed of the RIM core against its LSTM baselines, measured in one run (medians and ratios).

Run: ``python benchmarks/core.py [--repeats 7] [--threads 2] [--compile]``

Forward + backward unless stated; every case in its default configuration where one exists:

(a) throughput: ``RIM(512, 85, 6, k=4)`` with the core's defaults (1 input head, values 4 x 85, dropout
    0.1, training mode) and without dropout, on [T=128, B=64, D=512], against ``nn.LSTM(512, 510)``;
(b) latency (a PPO minibatch of two whole env rollouts): RIM 6 x 16, k=4, [T=128, B=2, D=64], with
    dropout 0.1 (core default) and without, against a Python loop of ``nn.LSTMCell(64, 96)``;
(c) a ``RimPPO`` training chunk: RIM 6 x 16, k=5, the paper's RL setting (4 input heads, no dropout),
    [T=16, B=16, D=64], against the fused ``nn.LSTM(64, 96)`` the LSTM agent runs;
(d) acting: one forward step at B=8, no grad, RL setting, ``RIMCell`` 6 x 85 against ``nn.LSTMCell(512, 510)``.

With ``--compile``, (b), (c) and (d) also time ``compile_sequence()`` (the loop under ``torch.compile``,
in blocks of at most 16 steps, which ``RimPPO`` and the supervised trainer use by default); compilation
time is printed apart (inductor caches it on disk, so a second run compiles in seconds). On a CUDA
machine the same cases run on the GPU too. Within a case the functions are timed round-robin (one call
of each in turn), so that a shared machine's changing load falls on all of them alike: quote the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from rims_rl import RIM

RL = dict(input_dropout=0.0, comm_dropout=0.0, num_input_heads=4)


def median_times(fns: dict, repeats: int, warmup: int = 2, sync=lambda: None) -> dict:
    """Median seconds per call of each function, timed round-robin (one call of each in turn), so that a
    machine's changing load falls on all of them alike and their ratios stay comparable.

    :param fns: label -> function of no arguments
    :return: label -> median seconds
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(t) for label, t in times.items()}


def fwd_bwd(module_fn, xs):
    def run():
        out = module_fn(xs)
        out.sum().backward()

    return run


def lstm_cell_loop(cell: nn.LSTMCell):
    def f(xs):
        h = xs.new_zeros(xs.shape[1], cell.hidden_size)
        c = torch.zeros_like(h)
        outs = []
        for x in xs.unbind(0):
            h, c = cell(x, (h, c))
            outs.append(h)
        return torch.stack(outs)

    return f


def compiled_copy(rim: RIM) -> RIM:
    """A copy of ``rim`` (same weights and mode) with ``compile_sequence()``; it compiles on its first call."""
    return copy.deepcopy(rim).compile_sequence()


def first_call_seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_cases(device: torch.device, repeats: int, compile_too: bool) -> None:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timed = lambda fns, n=repeats: median_times(fns, n, sync=sync)  # noqa: E731
    print(f"--- {device}")

    # (a) throughput
    xs = torch.randn(128, 64, 512, device=device)
    lstm = nn.LSTM(512, 510).to(device)
    fns = {"lstm": fwd_bwd(lambda x: lstm(x)[0], xs)}
    labels = {"core defaults (dropout 0.1)": {}, "no dropout": dict(input_dropout=0.0, comm_dropout=0.0)}
    for label, kw in labels.items():
        rim = RIM(512, 85, num_units=6, k_active=4, **kw).to(device)
        fns[label] = fwd_bwd(lambda x, rim=rim: rim(x)[0], xs)
    t = timed(fns)
    for label in labels:
        print(
            f"(a) T=128 B=64 D=512, RIM 6x85 k=4 {label}: {t[label] * 1e3:.0f} ms; nn.LSTM(512, 510) "
            f"{t['lstm'] * 1e3:.0f} ms; ratio {t[label] / t['lstm']:.2f}x (bar <= 1.5x)"
        )

    # (b) latency, with and without dropout
    xs = torch.randn(128, 2, 64, device=device)
    cell = nn.LSTMCell(64, 96).to(device)
    fns, first = {"cell": fwd_bwd(lstm_cell_loop(cell), xs)}, {}
    labels = {"no dropout": dict(input_dropout=0.0, comm_dropout=0.0), "dropout 0.1": {}}
    for label, kw in labels.items():
        rim = RIM(64, 16, num_units=6, k_active=4, **kw).to(device)
        fns[label] = fwd_bwd(lambda x, rim=rim: rim(x)[0], xs)
        if compile_too:
            crim = compiled_copy(rim)
            fns[label + " compiled"] = fwd_bwd(lambda x, crim=crim: crim(x)[0], xs)
            first[label] = first_call_seconds(fns[label + " compiled"])
    t = timed(fns)
    for label in labels:
        print(
            f"(b) T=128 B=2 D=64, RIM 6x16 {label}, eager: {t[label] * 1e3:.1f} ms; LSTMCell(64, 96) loop "
            f"{t['cell'] * 1e3:.1f} ms; ratio {t[label] / t['cell']:.2f}x (bar <= 2.5x); vs no dropout "
            f"{t[label] / t['no dropout']:.2f}x (bar <= 1.3x)"
        )
        if compile_too:
            tc = t[label + " compiled"]
            print(
                f"    compiled (8 blocks of 16 steps): {tc * 1e3:.1f} ms, ratio {tc / t['cell']:.2f}x; "
                f"vs no dropout {tc / t['no dropout compiled']:.2f}x (first call {first[label]:.0f} s)"
            )

    # (c) a RimPPO training chunk
    xs = torch.randn(16, 16, 64, device=device)
    rim = RIM(64, 16, num_units=6, k_active=5, **RL).to(device)
    lstm = nn.LSTM(64, 96).to(device)
    fns = {"lstm": fwd_bwd(lambda x: lstm(x)[0], xs), "rim": fwd_bwd(lambda x: rim(x)[0], xs)}
    if compile_too:
        crim = compiled_copy(rim)
        fns["compiled"] = fwd_bwd(lambda x: crim(x)[0], xs)
        t_first = first_call_seconds(fns["compiled"])
    t = timed(fns, repeats * 5)
    print(
        f"(c) T=16 B=16 D=64, RIM 6x16 k=5 RL setting, eager: {t['rim'] * 1e3:.2f} ms; nn.LSTM(64, 96) "
        f"{t['lstm'] * 1e3:.2f} ms; ratio {t['rim'] / t['lstm']:.1f}x (bar <= 5x)"
    )
    if compile_too:
        print(
            f"    compiled (RimPPO's default): {t['compiled'] * 1e3:.2f} ms, ratio {t['compiled'] / t['lstm']:.1f}x "
            f"(first call {t_first:.0f} s)"
        )

    # (d) acting
    x = torch.randn(1, 8, 512, device=device)
    rim = RIM(512, 85, num_units=6, k_active=5, **RL).to(device).eval()
    state = tuple(s + 0.1 for s in rim.initial_state(8, device))
    lcell = nn.LSTMCell(512, 510).to(device)
    hl = (torch.zeros(8, 510, device=device), torch.zeros(8, 510, device=device))
    with torch.no_grad():
        fns = {"rim": lambda: rim(x, state), "cell": lambda: lcell(x[0], hl)}
        if compile_too:
            crim = compiled_copy(rim)
            fns["compiled"] = lambda: crim(x, state)
            t_first = first_call_seconds(fns["compiled"])
        t = timed(fns, max(repeats, 50) * 4)
        print(
            f"(d) one acting step B=8 D=512, RIM 6x85 RL setting, eager: {t['rim'] * 1e6:.0f} us; "
            f"LSTMCell(512, 510) {t['cell'] * 1e6:.0f} us; ratio {t['rim'] / t['cell']:.1f}x"
        )
        if compile_too:
            tc = t["compiled"]
            print(f"    compiled: {tc * 1e6:.0f} us, ratio {tc / t['cell']:.1f}x (first call {t_first:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time compile_sequence() (RimPPO's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} (round-robin)")
    run_cases(torch.device("cpu"), args.repeats, args.compile)
    if torch.cuda.is_available():
        run_cases(torch.device("cuda"), args.repeats, args.compile)


if __name__ == "__main__":
    main()
