"""Supervised sequence tasks from the RIM paper: copying, sequential MNIST, bouncing balls.

Each task module holds its data (seedable generators or a loader, documented shapes) and metrics;
``models`` holds one wrapper per task around a RIM, ``nn.LSTM`` or ``nn.GRU`` core; ``training``
runs a task with metrics, TensorBoard events and resumable checkpoints.
"""

from .balls import BallsTask, apply_curtain, render_balls, rollout_bce, simulate_balls
from .copying import CopyingTask, copying_batch, copying_metrics
from .mnist import MnistTask, load_idx, load_mnist, resize_images, save_idx, to_pixel_sequence
from .models import BallsModel, CopyingModel, CoreConfig, MnistModel, RecurrentCore, SequenceModel
from .task import SupervisedTask
from .training import TASKS, TrainConfig, train

__all__ = [
    "TASKS",
    "TrainConfig",
    "train",
    "SupervisedTask",
    "CoreConfig",
    "RecurrentCore",
    "SequenceModel",
    "CopyingTask",
    "copying_batch",
    "copying_metrics",
    "CopyingModel",
    "MnistTask",
    "load_idx",
    "save_idx",
    "load_mnist",
    "resize_images",
    "to_pixel_sequence",
    "MnistModel",
    "BallsTask",
    "simulate_balls",
    "render_balls",
    "apply_curtain",
    "rollout_bce",
    "BallsModel",
]
