"""Modules every grid cell imports, loaded once in the grid's fork server so that a cell's process
starts in a fraction of a second (measured on the 2-core machine: about 10 s of imports otherwise):
the training stack, MinAtar (it imports seaborn and scipy.stats), matplotlib (mechanism heatmaps),
TensorBoard's writer and ``torch._dynamo`` (imported when a RIM policy is built)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot  # noqa: E402,F401
import minatar  # noqa: E402,F401
import torch._dynamo  # noqa: E402,F401
import torch.utils.tensorboard  # noqa: E402,F401

import rims_rl.rl.training  # noqa: E402,F401
