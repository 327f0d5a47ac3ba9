"""A small RIM demo: learn to recall the first symbol of a sequence, and show which mechanisms are active.

Run: ``python scripts/demo.py [--steps 150] [--seed 0]`` (well under a minute on 2 quiet CPU cores).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from rims_rl import RIM


class Recall(nn.Module):
    """Embedding -> RIM -> linear readout of the last step. Input tokens [T, B], logits [B, vocab]."""

    def __init__(self, vocab: int, hidden_size: int = 32, num_units: int = 6, k_active: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, 32)  # the last token is the blank
        self.rim = RIM(32, hidden_size, num_units, k_active, input_value_size=64)
        self.head = nn.Linear(self.rim.output_size, vocab)

    def forward(self, tokens: torch.Tensor):
        out, _, active = self.rim(self.embed(tokens))
        return self.head(out[-1]), active


def batch(vocab: int, length: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A symbol, then blanks: [T, B] tokens and the symbol [B] to recall."""
    target = torch.randint(vocab, (size,))
    tokens = torch.full((length, size), vocab)
    tokens[0] = target
    return tokens, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150, help="training steps (batches of 64)")
    parser.add_argument("--length", type=int, default=12, help="sequence length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 1 or args.length < 2:
        parser.error(f"--steps must be >= 1 and --length >= 2, got {args.steps} and {args.length}")
    torch.manual_seed(args.seed)
    vocab = 8
    model = Recall(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    print(
        f"RIM: {model.rim.num_units} mechanisms x {model.rim.hidden_size}, {model.rim.k_active} active per step; "
        f"recall a symbol after {args.length - 1} blanks (chance: {1 / vocab:.0%})"
    )
    for step in range(1, args.steps + 1):
        tokens, target = batch(vocab, args.length, 64)
        logits, _ = model(tokens)
        loss = nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            acc = (logits.argmax(-1) == target).float().mean()
            print(f"step {step:4d}  loss {loss.item():.3f}  accuracy {acc:.0%}")
    model.eval()
    with torch.no_grad():
        tokens, target = batch(vocab, args.length, 512)
        logits, active = model(tokens)
    print(f"held-out accuracy: {(logits.argmax(-1) == target).float().mean():.1%}")
    print("active mechanisms of one sequence (rows: mechanisms, columns: steps; # = active):")
    for u in range(model.rim.num_units):
        print(f"  unit {u}: " + "".join("#" if a else "." for a in active[:, 0, u].tolist()))


if __name__ == "__main__":
    main()
