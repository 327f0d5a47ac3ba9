"""The copying task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), RIM paper Table 1.

A sequence of ``copy_length`` random symbols, a gap of blanks, a delimiter, then ``copy_length``
blanks during which the model must output the symbols again. Trained with gap 50, tested with gap
200. Tokens: ``0`` blank, ``1..num_symbols`` symbols, ``num_symbols + 1`` delimiter.
Sequence length T = ``2 * copy_length + gap + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import CopyingModel
from .task import SupervisedTask, to_model_device

BLANK = 0


def copying_batch(
    batch_size: int,
    copy_length: int = 10,
    gap: int = 50,
    num_symbols: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of the copying task.

    :param batch_size: B
    :param copy_length: symbols to copy (paper: 10)
    :param gap: blanks between the symbols and the delimiter (paper: 50 train, 200 test)
    :param num_symbols: alphabet size (paper: 8), tokens ``1..num_symbols``
    :param generator: seeded ``torch.Generator`` for reproducible batches
    :return: inputs long [T, B], targets long [T, B] (blank except the last ``copy_length`` steps,
        which hold the input symbols), mask bool [T, B] of those copied positions;
        T = 2 * copy_length + gap + 1
    """
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("copy_length", copy_length, 1),
        ("gap", gap, 0),
        ("num_symbols", num_symbols, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    t = 2 * copy_length + gap + 1
    symbols = torch.randint(1, num_symbols + 1, (copy_length, batch_size), generator=generator)
    inputs = torch.full((t, batch_size), BLANK, dtype=torch.long)
    inputs[:copy_length] = symbols
    inputs[copy_length + gap] = num_symbols + 1  # the delimiter
    targets = torch.full_like(inputs, BLANK)
    targets[-copy_length:] = symbols
    mask = torch.zeros(t, batch_size, dtype=torch.bool)
    mask[-copy_length:] = True
    return inputs, targets, mask


def copying_metrics(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Cross-entropy per copied symbol and exact-copy accuracy.

    :param logits: [T, B, num_tokens]
    :param targets: long [T, B]
    :param mask: bool [T, B], the copied positions
    :return: ``ce`` (nats per copied symbol), ``ce_all`` (nats per position, averaged over all T
        positions, blanks included: the convention of the authors' released ``train_copying.py``;
        about ``copy_length / T`` of ``ce`` when the blanks are predicted well), ``symbol_acc`` (fraction of copied
        symbols right), ``copy_acc`` (fraction of sequences copied without a single error)
    """
    ce = F.cross_entropy(logits[mask], targets[mask]).item()
    right = (logits.argmax(-1) == targets) | ~mask
    return {
        "ce": ce,
        "ce_all": F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item(),
        "symbol_acc": right[mask].float().mean().item(),
        "copy_acc": right.all(0).float().mean().item(),
    }


@dataclass
class CopyingOptions:
    """:param copy_length: symbols to copy (paper: 10)
    :param num_symbols: alphabet size (paper: 8)
    :param train_gap: gap length in training (paper: 50)
    :param test_gaps: gap lengths evaluated (paper: 200; 50 is the training condition)
    :param embed_size: token embedding size
    :param eval_sequences: test sequences per gap length
    :param loss_on: ``"all"`` steps (the standard task: blanks are targets too) or ``"copy"`` only
    """

    copy_length: int = 10
    num_symbols: int = 8
    train_gap: int = 50
    test_gaps: tuple = (50, 200)
    embed_size: int = 32
    eval_sequences: int = 512
    loss_on: str = "all"

    def __post_init__(self):
        self.test_gaps = tuple(self.test_gaps)
        if self.loss_on not in ("all", "copy"):
            raise ValueError(f"loss_on must be 'all' or 'copy', got {self.loss_on!r}")


class CopyingTask(SupervisedTask):
    """Copying: train with ``train_gap``, report cross-entropy per copied symbol at each test gap."""

    name = "copying"
    Options = CopyingOptions

    def make_model(self) -> CopyingModel:
        return CopyingModel(self.options.num_symbols + 2, self.core, self.options.embed_size)

    def sample_batch(self, batch_size: int, generator: torch.Generator):
        """:return: inputs, targets, mask [T, B] at ``train_gap`` (see :func:`copying_batch`)"""
        o = self.options
        return copying_batch(batch_size, o.copy_length, o.train_gap, o.num_symbols, generator)

    def loss(self, model, batch):
        inputs, targets, mask = to_model_device(model, *batch)
        logits, _, active = model(inputs)
        if self.options.loss_on == "copy":
            loss = F.cross_entropy(logits[mask], targets[mask])
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss, {"copy_ce": F.cross_entropy(logits[mask].detach(), targets[mask]).item()}

    @torch.no_grad()
    def evaluate(self, model, generator: torch.Generator) -> dict[str, float]:
        o, out = self.options, {}
        for gap in o.test_gaps:
            inputs, targets, mask = to_model_device(
                model, *copying_batch(o.eval_sequences, o.copy_length, gap, o.num_symbols, generator)
            )
            logits = torch.cat([model(x)[0] for x in inputs.split(256, dim=1)], dim=1)
            out.update({f"test{gap}/{k}": v for k, v in copying_metrics(logits, targets, mask).items()})
        return out
