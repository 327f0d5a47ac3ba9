"""Bouncing balls (RIM paper Section 4.2): predict the next frame of elastic balls in a box.

A small physics simulator (equal-mass disks, elastic collisions with each other and the walls,
exact kinetic-energy conservation) renders frames; the model is trained on sequences with few balls
and tested on more balls and on closed-loop rollouts, where its own predictions are fed back, and on
sequences where an invisible square "curtain" hides the balls behind it (the paper's occlusion test,
from van Steenkiste et al. 2018).
Metric: binary cross-entropy per frame (summed over pixels) at each rollout step.
Shapes: T time, B batch, K balls, S frame side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .models import BallsModel
from .task import SupervisedTask, to_model_device


def _initial_positions(rng: np.random.Generator, batch_size: int, num_balls: int, radius: float) -> np.ndarray:
    """Non-overlapping centres in [radius, 1 - radius]^2 by rejection: [B, K, 2]."""
    pos = rng.uniform(radius, 1 - radius, (batch_size, num_balls, 2))
    for _ in range(10_000):
        d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1) + np.eye(num_balls) * 10
        bad = (d < 2 * radius).any((1, 2))
        if not bad.any():
            return pos
        pos[bad] = rng.uniform(radius, 1 - radius, (int(bad.sum()), num_balls, 2))
    raise ValueError(f"cannot place {num_balls} balls of radius {radius} in the unit box without overlap")


def simulate_balls(
    num_balls: int,
    steps: int,
    batch_size: int,
    radius: float = 0.08,
    speed: float = 0.04,
    substeps: int = 8,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate equal-mass elastic balls in the unit box.

    :param num_balls: K
    :param steps: frames T
    :param batch_size: B independent boxes
    :param radius: ball radius (box side 1)
    :param speed: initial speed of every ball, box sides per frame (directions random)
    :param substeps: integration substeps per frame (collisions are checked at each)
    :param rng: numpy ``Generator`` for reproducible starts
    :return: positions [T, B, K, 2] (centres stay in [radius, 1 - radius]), velocities [T, B, K, 2]
    """
    if not (isinstance(num_balls, int) and num_balls >= 1):
        raise ValueError(f"num_balls must be a positive integer, got {num_balls!r}")
    if not 0 < radius < 0.5:
        raise ValueError(f"radius must be in (0, 0.5), got {radius!r}")
    if speed / substeps >= radius:
        raise ValueError(f"speed / substeps must be below radius={radius} (tunnelling), got {speed / substeps}")
    rng = rng or np.random.default_rng()
    pos = _initial_positions(rng, batch_size, num_balls, radius)
    angle = rng.uniform(0, 2 * np.pi, (batch_size, num_balls))
    vel = speed * np.stack([np.cos(angle), np.sin(angle)], -1)
    dt = 1.0 / substeps
    pairs = [(i, j) for i in range(num_balls) for j in range(i + 1, num_balls)]
    positions, velocities = [], []
    for _ in range(steps):
        positions.append(pos.copy())
        velocities.append(vel.copy())
        for _ in range(substeps):
            pos = pos + vel * dt
            low, high = pos < radius, pos > 1 - radius  # reflect off the walls
            pos = np.where(low, 2 * radius - pos, np.where(high, 2 * (1 - radius) - pos, pos))
            vel = np.where(low | high, -vel, vel)
            for i, j in pairs:  # equal masses: swap the velocity components along the line of centres
                d = pos[:, j] - pos[:, i]
                dist = np.linalg.norm(d, axis=-1, keepdims=True)
                n = d / np.maximum(dist, 1e-9)
                approach = ((vel[:, i] - vel[:, j]) * n).sum(-1, keepdims=True)
                hit = (dist < 2 * radius) & (approach > 0)
                dv = np.where(hit, approach, 0.0) * n
                vel[:, i] -= dv
                vel[:, j] += dv
    return np.stack(positions), np.stack(velocities)


def render_balls(positions: np.ndarray, frame_size: int = 24, radius: float = 0.08) -> np.ndarray:
    """Render antialiased disks: a pixel's value is its covered fraction (approximately), max over balls.

    :param positions: centres [..., K, 2] in the unit box
    :param frame_size: S
    :param radius: ball radius (box side 1)
    :return: frames float32 [..., S, S] in [0, 1] (axis -2 is y, axis -1 is x)
    """
    grid = (np.arange(frame_size) + 0.5) / frame_size
    dx = grid[None, :] - positions[..., 0, None, None]  # [..., K, 1, S]
    dy = grid[:, None] - positions[..., 1, None, None]  # [..., K, S, 1]
    dist = np.sqrt(dx**2 + dy**2)
    return np.clip((radius - dist) * frame_size + 0.5, 0.0, 1.0).max(-3).astype(np.float32)


def balls_batch(
    num_balls: int,
    steps: int,
    batch_size: int,
    frame_size: int,
    radius: float,
    speed: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Frames of freshly simulated boxes: float32 [T, B, S, S]; the numpy seed is drawn from ``generator``."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    pos, _ = simulate_balls(num_balls, steps, batch_size, radius, speed, rng=rng)
    return torch.from_numpy(render_balls(pos, frame_size, radius))


def curtain_side(frame_size: int, curtain: float) -> int:
    """The curtain's side in pixels: ``curtain * frame_size`` rounded, at least 1 (28 of 64 for 0.4375)."""
    return max(1, round(curtain * frame_size))


def apply_curtain(frames: torch.Tensor, top_left: torch.Tensor, side: int) -> torch.Tensor:
    """Hide the balls behind an invisible square curtain, fixed over each sequence.

    As in the curtain data of van Steenkiste et al. (2018) that the RIM paper evaluates on, the curtain is
    not drawn: its pixels are set to the background, 0, in every frame, so a ball behind it vanishes
    wholly or in part while the simulation (and the ball) goes on.

    :param frames: [T, B, S, S] (axis -2 is y, axis -1 is x)
    :param top_left: integer [B, 2]: each sequence's curtain corner, (row, column)
    :param side: curtain side in pixels
    :return: frames [T, B, S, S] with the ``side`` x ``side`` square at ``top_left`` zeroed (a new tensor)
    """
    size = frames.shape[-1]
    if not 1 <= side <= size:
        raise ValueError(f"curtain side must be in 1..{size} pixels, got {side}")
    top_left = torch.as_tensor(top_left, device=frames.device)
    if top_left.shape != (frames.shape[1], 2) or not (0 <= top_left).all() or not (top_left <= size - side).all():
        raise ValueError(f"top_left must be [B={frames.shape[1]}, 2] in 0..{size - side}, got {top_left.tolist()}")
    pixels = torch.arange(size, device=frames.device)
    inside = (pixels >= top_left[..., None]) & (pixels < top_left[..., None] + side)  # [B, 2, S]: rows, columns
    hidden = inside[:, 0, :, None] & inside[:, 1, None, :]  # [B, S, S]
    return frames.masked_fill(hidden, 0.0)


def frame_bce(logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per frame, summed over pixels: [..., S, S] -> [...]."""
    return F.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum((-2, -1))


def closed_loop_logits(model, frames: torch.Tensor, context: int) -> torch.Tensor:
    """The model's predictions of frames[1:] when it sees the true frames[:context] and then, one frame at a time,
    its own last prediction (the sigmoid of its logits; gradients flow through it when enabled).

    :param model: a :class:`BallsModel`
    :param frames: [T, B, S, S], T > context
    :param context: true frames given
    :return: logits [T-1, B, S, S]; the first ``context`` are teacher-forced
    """
    logits, state, _ = model(frames[:context])  # predictions of frames[1 : context + 1]
    outputs, last = [logits], logits[-1]
    for _ in range(len(frames) - 1 - context):  # predictions of frames[context + 1 :], each from the one before
        out, state, _ = model(torch.sigmoid(last).unsqueeze(0), state)
        outputs.append(out)
        last = out[0]
    return torch.cat(outputs)


@torch.no_grad()
def rollout_bce(model, frames: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-loop rollout: the model sees the true first ``context`` frames, then its own predictions.

    :param model: a :class:`BallsModel` (eval mode)
    :param frames: [T, B, S, S], T > context
    :param context: frames given
    :return: one-step (teacher-forced) BCE per frame [T-1] and rollout BCE per frame at each rollout
        step [T - context], both averaged over B
    """
    if not 0 < context < len(frames):
        raise ValueError(f"context must be in 1..{len(frames) - 1}, got {context}")
    logits, _, _ = model(frames[:-1])
    one_step = frame_bce(logits, frames[1:]).mean(1)
    rollout = frame_bce(closed_loop_logits(model, frames, context)[context - 1 :], frames[context:]).mean(1)
    return one_step, rollout


@dataclass
class BallsOptions:
    """:param frame_size: frame side S (paper: 64; 24 here)
    :param radius: ball radius, box side 1
    :param speed: ball speed, box sides per frame
    :param train_balls: balls in training sequences (paper: 4)
    :param test_balls: balls in test sequences (paper: 6-8; the training count as a check)
    :param seq_len: frames per training sequence
    :param context: frames given before the closed-loop test rollout
    :param rollout: frames predicted closed-loop at test time
    :param embed_size: frame encoder output size
    :param eval_sequences: test sequences per ball count
    :param curtain: side of the occluding square, a fraction of the frame side (0.4375: the 28 of 64 pixels
        measured in van Steenkiste et al.'s curtain data); each test sequence gets its own random position,
        fully inside the frame, fixed over time (:func:`apply_curtain`). Training never sees the curtain.
    :param curtain_balls: balls in the curtain test sequences (paper: 3, its curtain dataset's); () skips it
    :param closed_loop: train as the model is tested: it sees the first ``context`` true frames of each training
        sequence and then its own predictions (the sigmoid of its logits, gradients flowing through them);
        ``False``: teacher forcing, every input a true frame. Default ``True``: trained with teacher forcing, the
        rollouts of the small models here grew worse than predicting the mean frame (results/supervised/README.md)
    """

    frame_size: int = 24
    radius: float = 0.08
    speed: float = 0.04
    train_balls: int = 4
    test_balls: tuple = (4, 6, 8)
    seq_len: int = 20
    context: int = 10
    rollout: int = 10
    embed_size: int = 128
    eval_sequences: int = 256
    curtain: float = 0.4375
    curtain_balls: tuple = (3,)
    closed_loop: bool = True

    def __post_init__(self):
        self.test_balls = tuple(self.test_balls)
        self.curtain_balls = tuple(self.curtain_balls)
        if not (isinstance(self.curtain, (int, float)) and 0 < self.curtain < 1):
            raise ValueError(f"curtain must be a fraction of the frame side in (0, 1), got {self.curtain!r}")
        if not all(isinstance(k, int) and k >= 1 for k in self.curtain_balls):
            raise ValueError(f"curtain_balls must be positive integers (or empty), got {self.curtain_balls!r}")
        if self.closed_loop and not 1 <= self.context <= self.seq_len - 2:
            raise ValueError(
                f"closed_loop training needs context in 1..{self.seq_len - 2} (seq_len - 2), got {self.context}"
            )


class BallsTask(SupervisedTask):
    """Bouncing balls: next-frame prediction; rollout BCE per frame at each test ball count, and behind a
    curtain."""

    name = "balls"
    Options = BallsOptions

    def make_model(self) -> BallsModel:
        return BallsModel(self.options.frame_size, self.core, self.options.embed_size)

    def _frames(self, num_balls, steps, batch_size, generator):
        o = self.options
        return balls_batch(num_balls, steps, batch_size, o.frame_size, o.radius, o.speed, generator)

    def _curtain_frames(self, num_balls, steps, batch_size, generator):
        """Frames [T, B, S, S] behind a curtain at a random place per sequence (drawn from ``generator``)."""
        side = curtain_side(self.options.frame_size, self.options.curtain)
        frames = self._frames(num_balls, steps, batch_size, generator)
        top_left = torch.randint(0, self.options.frame_size - side + 1, (batch_size, 2), generator=generator)
        return apply_curtain(frames, top_left, side)

    def sample_batch(self, batch_size: int, generator: torch.Generator):
        """:return: frames [seq_len, B, S, S] with ``train_balls`` balls; the model predicts frames[1:] from
        frames[:-1]"""
        return self._frames(self.options.train_balls, self.options.seq_len, batch_size, generator)

    def loss(self, model, frames):
        """Mean BCE per frame of the predictions of frames[1:]; with ``closed_loop`` the model sees the true
        frames[:context] and then its own predictions, as at test time (``closed_loop_bce``: the mean over the
        predictions made from its own)."""
        (frames,) = to_model_device(model, frames)
        c = self.options.context
        if not self.options.closed_loop:
            logits, _, _ = model(frames[:-1])
            return frame_bce(logits, frames[1:]).mean(), {}
        bce = frame_bce(closed_loop_logits(model, frames, c), frames[1:]).mean(1)  # [T-1]
        return bce.mean(), {"closed_loop_bce": bce[c:].mean().item()}

    @torch.no_grad()
    def evaluate(self, model, generator: torch.Generator) -> dict[str, float]:
        """``balls{k}/...`` on plain frames for each of ``test_balls``, then ``balls{k}_curtain/...`` for each of
        ``curtain_balls``: the model sees the curtained context and is scored against the curtained frames, where
        the hidden balls are background (as in the paper's curtain data). Metrics per frame: ``one_step_bce``
        (teacher-forced), ``rollout_bce`` (mean over the closed-loop rollout), ``rollout_bce_last`` (its last
        frame), and a model-free reference, ``mean_frame_bce``: the rollout frames all predicted as the per-pixel
        mean of the condition's test frames (a ``rollout_bce`` above it predicts worse than that). The curtain
        conditions come after the plain ones, so they leave the plain test sets unchanged."""
        o, out = self.options, {}
        conditions = [(f"balls{k}", k, self._frames) for k in o.test_balls]
        conditions += [(f"balls{k}_curtain", k, self._curtain_frames) for k in o.curtain_balls]
        for name, k, make in conditions:
            (frames,) = to_model_device(model, make(k, o.context + o.rollout, o.eval_sequences, generator))
            one_step, rollout = rollout_bce(model, frames, o.context)
            out[f"{name}/one_step_bce"] = one_step.mean().item()
            out[f"{name}/rollout_bce"] = rollout.mean().item()
            out[f"{name}/rollout_bce_last"] = rollout[-1].item()
            target, mean = frames[o.context :], frames.mean((0, 1)).clamp(1e-4, 1 - 1e-4)  # per-pixel mean [S, S]
            out[f"{name}/mean_frame_bce"] = frame_bce(torch.logit(mean).expand_as(target), target).mean().item()
        return out
