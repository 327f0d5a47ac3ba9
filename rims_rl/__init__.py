"""rims_rl: Recurrent Independent Mechanisms for reinforcement learning and sequence modelling."""

from .core import RIM, RIMCell

__version__ = "0.1.0"
__all__ = ["RIM", "RIMCell", "CnnRimPolicy", "MlpRimPolicy", "MultiInputRimPolicy", "RimPPO"]

_RL_NAMES = ("CnnRimPolicy", "MlpRimPolicy", "MultiInputRimPolicy", "RimPPO")


def __getattr__(name: str):
    # the RL names import Stable-Baselines3: load them on first use, so the core stays light to import
    if name in _RL_NAMES:
        from . import rl

        return getattr(rl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
