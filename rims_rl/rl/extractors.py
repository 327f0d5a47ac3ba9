"""Features extractors: the image's positions as separate input elements for the RIM (:class:`SpatialNatureCNN`),
the MinAtar baseline's network (:class:`MinAtarCNN`) and the MiniGrid starter agents' (:class:`MiniGridCNN`)."""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn


class SpatialNatureCNN(NatureCNN):
    """The convolutions of NatureCNN (Mnih et al. 2015) without the final dense layer: each position of
    the last feature map is one input element, so the mechanisms compete for image regions.

    An element is the position's ``C = 64`` channels and its coordinates ``(y, x)`` in ``[-1, 1]``, so a
    mechanism can tell where it looks. The output is flat, ``[B, N * (C + 2)]`` (what SB3 extractors
    return); the RIM core views it as ``[B, N, C + 2]``.

    :param observation_space: image space, channel first ``[C_in, height, width]``
    :param normalized_image: the images are already normalised (see ``NatureCNN``)
    """

    def __init__(self, observation_space: gym.Space, normalized_image: bool = False):
        super().__init__(observation_space, features_dim=1, normalized_image=normalized_image)
        del self.linear
        self.cnn = self.cnn[:-1]  # drop Flatten: [B, C, h, w] feature map
        with torch.no_grad():
            fmap = self.cnn(torch.as_tensor(observation_space.sample()[None]).float())
        channels, height, width = fmap.shape[1:]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coords", torch.stack([ys, xs], dim=-1).flatten(0, 1), persistent=False)  # [N, 2]
        self.num_elements, self.element_dim = height * width, channels + 2
        self._features_dim = self.num_elements * self.element_dim

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """:param observations: images [B, C_in, height, width]
        :return: elements, flat [B, N * (C + 2)] (N = h * w positions of the last feature map)
        """
        fmap = self.cnn(observations).flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, N, C]
        coords = self.coords.expand(fmap.shape[0], -1, -1)  # [B, N, 2]
        return torch.cat([fmap, coords], dim=-1).flatten(1)


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar baseline network's features (Young & Tian 2019): one 3x3 convolution with 16
    channels on the 10x10 input, then a dense layer. Observations are {0, 1} already: no scaling.

    :param observation_space: ``[C, 10, 10]``
    :param features_dim: size of the dense layer (128 as the MinAtar baselines)
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n_flatten = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """:param observations: [B, C, 10, 10] :return: [B, features_dim]"""
        return self.linear(self.cnn(observations.float()))


class MiniGridCNN(BaseFeaturesExtractor):
    """The image embedding of the MiniGrid starter agents (``rl-starter-files``' ``ACModel``, also the RIM
    MiniGrid experiments of dido1998/Recurrent-Independent-Mechanisms): 2x2 convolutions with 16, 32 and 64
    channels and a 2x2 max-pool after the first, on the symbolic 7x7 view, flattened (64 features for 7x7).
    The observations are object, colour and state indices, used as they are (no scaling: pass
    ``normalize_images=False`` to the policy, as the presets do).

    :param observation_space: ``[3, H, W]`` channel first (``[3, 7, 7]``: :func:`rims_rl.rl.envs.make_minigrid_env`)
    :param features_dim: a dense layer (with ReLU) to this size after the convolutions; ``None`` = none, the
        flattened convolutions are the features (as the starter agents)
    :raises ValueError: a view smaller than 5x5 (the convolutions would leave nothing)
    """

    def __init__(self, observation_space: gym.Space, features_dim: int | None = None):
        channels, height, width = observation_space.shape
        if min(height, width) < 5:
            raise ValueError(f"MiniGridCNN needs a view of at least 5x5, got {height}x{width}")
        cnn = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flatten = cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        super().__init__(observation_space, features_dim or n_flatten)
        self.cnn = cnn
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU()) if features_dim else nn.Identity()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """:param observations: [B, 3, H, W] indices :return: [B, features_dim]"""
        return self.linear(self.cnn(observations.float()))
