"""Speed of the RIM core against its LSTM baselines, measured in one run (medians and ratios).

Run: ``python benchmarks/core.py [--repeats 7] [--compile]``

(a) throughput: RIM 6 units x 85, k=4, LSTM cells, [T=128, B=64, D=512] vs ``nn.LSTM(512, 510)``;
(b) latency (a PPO minibatch of few env sequences): RIM 6 x 16, [T=128, B=2, D=64] vs a Python loop
    of ``nn.LSTMCell(64, 96)``; with ``--compile`` also the RIM step under ``torch.compile``;
(c) one forward step of RIMCell at B=8 (the acting path), against one ``nn.LSTMCell`` step.
All timings are forward + backward (except (c)), threads pinned to 2, RL setting (no dropout).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rims_rl import RIM, RIMCell

RL = dict(input_dropout=0.0, comm_dropout=0.0)


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the RIM step under torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    # (a) throughput
    xs = torch.randn(128, 64, 512)
    rim = RIM(512, 85, num_units=6, k_active=4, **RL)
    lstm = nn.LSTM(512, 510)
    t_rim = median_time(fwd_bwd(lambda x: rim(x)[0], xs), args.repeats)
    t_lstm = median_time(fwd_bwd(lambda x: lstm(x)[0], xs), args.repeats)
    print(f"(a) throughput T=128 B=64 D=512: RIM 6x85 k=4 {t_rim * 1e3:.0f} ms, nn.LSTM(512, 510) "
          f"{t_lstm * 1e3:.0f} ms, ratio {t_rim / t_lstm:.2f}x (bar <= 2x)")

    # (b) latency
    xs = torch.randn(128, 2, 64)
    rim = RIM(64, 16, num_units=6, k_active=4, **RL)
    cell = nn.LSTMCell(64, 96)
    t_rim = median_time(fwd_bwd(lambda x: rim(x)[0], xs), args.repeats)
    t_cell = median_time(fwd_bwd(lstm_cell_loop(cell), xs), args.repeats)
    print(f"(b) latency T=128 B=2 D=64: RIM 6x16 eager {t_rim * 1e3:.1f} ms ({t_rim / 128 * 1e3:.2f} ms/step), "
          f"LSTMCell(64, 96) loop {t_cell * 1e3:.1f} ms, ratio {t_rim / t_cell:.2f}x (bar <= 3x)")
    if args.compile:
        crim = RIM(64, 16, num_units=6, k_active=4, **RL)
        crim.load_state_dict(rim.state_dict())
        crim.compile_step()
        t0 = time.perf_counter()
        fwd_bwd(lambda x: crim(x)[0], xs)()
        t_compile = time.perf_counter() - t0
        t_c = median_time(fwd_bwd(lambda x: crim(x)[0], xs), args.repeats)
        print(f"    compiled step: {t_c * 1e3:.1f} ms ({t_c / 128 * 1e3:.2f} ms/step), ratio {t_c / t_cell:.2f}x "
              f"(first call incl. compilation {t_compile:.0f} s)")

    # (c) acting path: one forward step at B=8, no grad
    rcell = RIMCell(512, 85, num_units=6, k_active=4, **RL).eval()
    x, state = torch.randn(8, 512), rcell.initial_state(8)
    lcell = nn.LSTMCell(512, 510)
    hl = (torch.zeros(8, 510), torch.zeros(8, 510))
    with torch.no_grad():
        t_step = median_time(lambda: rcell(x, state), max(args.repeats, 50) * 4)
        t_lstep = median_time(lambda: lcell(x, hl), max(args.repeats, 50) * 4)
    print(f"(c) one forward step B=8 D=512: RIMCell 6x85 {t_step * 1e6:.0f} us, LSTMCell(512, 510) "
          f"{t_lstep * 1e6:.0f} us, ratio {t_step / t_lstep:.1f}x")


if __name__ == "__main__":
    main()
