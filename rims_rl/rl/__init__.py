"""Stable-Baselines3 integration: RIM policies for sb3-contrib, RimPPO with a per-mechanism rollout buffer."""

from .buffers import RimDictRolloutBuffer, RimRolloutBuffer
from .cores import LstmCore, RimCore
from .extractors import SpatialNatureCNN
from .memory_envs import DEFAULT_MEMORY_TASKS, MEMORY_TASKS, CartPoleNoVelEnv, CueRecallEnv, MemoryTask, make_memory_env
from .policies import CnnRimPolicy, MlpRimPolicy, MultiInputRimPolicy, RimActorCriticPolicy
from .ppo import RimPPO

__all__ = [
    "CnnRimPolicy",
    "MlpRimPolicy",
    "MultiInputRimPolicy",
    "RimActorCriticPolicy",
    "RimPPO",
    "RimRolloutBuffer",
    "RimDictRolloutBuffer",
    "RimCore",
    "LstmCore",
    "SpatialNatureCNN",
    "CartPoleNoVelEnv",
    "CueRecallEnv",
    "MemoryTask",
    "MEMORY_TASKS",
    "DEFAULT_MEMORY_TASKS",
    "make_memory_env",
]
