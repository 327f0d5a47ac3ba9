"""Pure-PyTorch Recurrent Independent Mechanisms (no RL code here)."""

from .attention import CommunicationAttention, InputAttention, select_active
from .config import RIMConfig
from .group_cells import GroupGRUCell, GroupLinear, GroupLSTMCell
from .rim import RIM, RIMCell

__all__ = [
    "RIM",
    "RIMCell",
    "RIMConfig",
    "GroupLinear",
    "GroupLSTMCell",
    "GroupGRUCell",
    "InputAttention",
    "CommunicationAttention",
    "select_active",
]
