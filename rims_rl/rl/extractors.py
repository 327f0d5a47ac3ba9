"""Features extractor that keeps the image's positions as separate input elements for the RIM."""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import NatureCNN


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
