"""rims_rl: Recurrent Independent Mechanisms for reinforcement learning and sequence modelling."""

from .core import RIM, RIMCell

__version__ = "0.1.0"
__all__ = ["RIM", "RIMCell"]
