"""The interface every supervised task implements."""

from __future__ import annotations

from typing import Any

import torch

from ..utils.config import build_dataclass
from .models import CoreConfig


def to_model_device(model: torch.nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors moved to the device of ``model``'s parameters (data are made on the CPU, where
    the seeded generators live; the model may sit on a GPU)."""
    device = next(model.parameters()).device
    return tuple(t.to(device, non_blocking=True) for t in tensors)


class SupervisedTask:
    """A supervised sequence task: data, model and metrics.

    Subclasses set ``name`` and ``Options`` (a dataclass of task options) and implement
    :meth:`make_model`, :meth:`sample_batch`, :meth:`loss` and :meth:`evaluate`.

    :param options: task options (a dict, checked against ``Options``, or an ``Options`` instance)
    :param core: the recurrent core of the model (a dict or :class:`CoreConfig`)
    """

    name: str = ""
    Options: type = object

    def __init__(self, options: dict | Any | None = None, core: dict | CoreConfig | None = None):
        self.options = (
            options
            if isinstance(options, self.Options)
            else build_dataclass(self.Options, options, f"{self.name} option(s)")
        )
        self.core = core if isinstance(core, CoreConfig) else build_dataclass(CoreConfig, core, "core key(s)")

    def make_model(self) -> torch.nn.Module:
        """The task's model with the configured core."""
        raise NotImplementedError

    def sample_batch(self, batch_size: int, generator: torch.Generator):
        """A training batch, time-major (see each task for its tensors), on the CPU.

        :param batch_size: B
        :param generator: the run's data generator (saved in checkpoints, so a resumed run continues
            the same stream)
        """
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """:param model: the task's model (from :meth:`make_model`)
        :param batch: from :meth:`sample_batch` (moved to the model's device here)
        :return: the training loss (a scalar tensor to minimise) and extra per-batch metrics"""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, generator: torch.Generator) -> dict[str, float]:
        """:param model: the task's model, in eval mode
        :param generator: seeded the same way at every evaluation, so every evaluation sees the same test set
        :return: test metrics named ``"<condition>/<metric>"`` (e.g. ``"test200/ce"``)"""
        raise NotImplementedError
