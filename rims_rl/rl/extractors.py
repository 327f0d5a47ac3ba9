"""Features extractor that keeps the image's positions as separate input elements for the RIM."""

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
