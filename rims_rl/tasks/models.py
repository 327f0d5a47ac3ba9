"""Model wrappers for the supervised tasks: encoder -> recurrent core (RIM, LSTM or GRU) -> head.

Shapes: T time, B batch, U mechanisms, H hidden size per mechanism, D input size, O core output size.
Every wrapper has the same API: ``model(xs, state=None) -> (y, state, active)`` with ``active`` the
RIM's active mask bool [T, B, U] (``None`` for the ``torch.nn`` baselines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..core import RIMConfig

MODELS = ("rim", "lstm", "gru")


@dataclass
class CoreConfig:
    """The recurrent core of a task model; defaults are the sizes used here (shrunk from the paper).

    The RIM's arguments have :class:`rims_rl.core.RIM`'s names (``hidden_size``, ``cell``); the LSTM/GRU
    baseline's size is ``lstm_hidden_size``, as in the RL policies. Configs saved before these names
    (``unit_size``, ``rim_cell``, ``hidden_size`` for the baseline) are read through
    :func:`rims_rl.tasks.training.upgrade_config`.

    :param model: ``"rim"``, ``"lstm"`` or ``"gru"``
    :param num_units: RIM mechanisms U (paper: 6)
    :param k_active: RIM mechanisms active per step (paper: 4 for the sequence tasks; RL uses 5, see
        :data:`rims_rl.rl.cores.RL_RIM_DEFAULTS`)
    :param hidden_size: RIM hidden size H per mechanism (32 here, smaller than the paper's 100, to fit 2 CPU cores)
    :param input_value_size: RIM input attention value size (paper: 400; 64 here)
    :param cell: cell inside each mechanism, ``"lstm"`` or ``"gru"``
    :param lstm_hidden_size: hidden size of the LSTM/GRU baseline (``model="lstm"`` or ``"gru"``);
        ``None`` = ``num_units * hidden_size`` (same state size as the RIM, as in the paper's comparison)
    :param rim_kwargs: further :class:`rims_rl.core.RIMConfig` fields (attention sizes, dropout, ``num_layers``...),
        not those above
    """

    model: str = "rim"
    num_units: int = 6
    k_active: int = 4
    hidden_size: int = 32
    input_value_size: int = 64
    cell: str = "lstm"
    lstm_hidden_size: int | None = None
    rim_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.model == "rim":
            self.rim_config()  # the RIM's values checked here, before any model is built

    def rim_config(self) -> RIMConfig:
        """The RIM core's :class:`~rims_rl.core.RIMConfig`: this config's RIM fields and ``rim_kwargs``.

        :raises ValueError: ``rim_kwargs`` repeats a field of this config, has an unknown key or an invalid value
        """
        own = dict(
            hidden_size=self.hidden_size,
            num_units=self.num_units,
            k_active=self.k_active,
            cell=self.cell,
            input_value_size=self.input_value_size,
        )
        repeated = sorted(set(own) & set(self.rim_kwargs))
        if repeated:
            raise ValueError(f"rim_kwargs {repeated} repeat CoreConfig fields: set those fields instead")
        return RIMConfig.from_dict({**own, **self.rim_kwargs}, "rim_kwargs", "the core config")


def drop_parameters_absent_from(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Remove the RIM query biases that a checkpoint lacks, so that it loads as the model it was saved from.

    Runs started before RIMs had a query bias (``RIMCell(query_bias=True)``, now the default) resume with
    the bias-free query they were trained with; call this before building the optimizer.

    :param model: a task model
    :param state_dict: the checkpoint's model state
    :return: the names of the removed parameters
    """
    removed = []
    for name, module in model.named_modules():
        if name.endswith("input_attention.query") and module.bias is not None and f"{name}.bias" not in state_dict:
            module.register_parameter("bias", None)
            removed.append(f"{name}.bias")
    return removed


class RecurrentCore(nn.Module):
    """A RIM, ``nn.LSTM`` or ``nn.GRU`` behind one interface (time-major).

    :param input_size: size D of one input step
    :param config: which core and its sizes
    """

    def __init__(self, input_size: int, config: CoreConfig):
        super().__init__()
        self.kind = config.model
        if self.kind == "rim":
            self.rnn = config.rim_config().build(input_size)
            self.output_size = self.rnn.output_size
        else:
            hidden = config.lstm_hidden_size or config.num_units * config.hidden_size
            self.rnn = (nn.LSTM if self.kind == "lstm" else nn.GRU)(input_size, hidden)
            self.output_size = hidden

    def forward(self, xs: torch.Tensor, state=None):
        """:param xs: [T, B, D]
        :param state: the core's own state (RIM: tuple of [L, B, U, H]; LSTM: (h, c) [1, B, O]); ``None`` = zeros
        :return: out [T, B, O], new state, active bool [T, B, U] or ``None`` for LSTM/GRU
        """
        if self.kind == "rim":
            return self.rnn(xs, state)
        out, state = self.rnn(xs, state)
        return out, state, None


class SequenceModel(nn.Module):
    """Encoder -> recurrent core -> head, applied to every step.

    :param encoder: maps inputs [T, B, ...] to [T, B, D]
    :param encoder_size: D
    :param config: the core
    :param head: maps [T, B, O] to outputs; built from the core size by ``make_head(O)``
    """

    def __init__(self, encoder: nn.Module, encoder_size: int, config: CoreConfig, make_head):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.core = RecurrentCore(encoder_size, config)
        self.head = make_head(self.core.output_size)

    def forward(self, xs: torch.Tensor, state=None):
        """:param xs: inputs [T, B, ...] (see the task's wrapper)
        :param state: the core's state, ``None`` = zeros
        :return: outputs of the head per step [T, B, ...], new state, active bool [T, B, U] or ``None``
        """
        out, state, active = self.core(self.encoder(xs), state)
        return self.head(out), state, active


class CopyingModel(SequenceModel):
    """Copying task: token embedding -> core -> logits over tokens.

    :param num_tokens: vocabulary size (symbols + blank + delimiter)
    :param config: the core
    :param embed_size: embedding size E
    Input tokens long [T, B]; output logits [T, B, num_tokens].
    """

    def __init__(self, num_tokens: int, config: CoreConfig, embed_size: int = 32):
        super().__init__(nn.Embedding(num_tokens, embed_size), embed_size, config, lambda o: nn.Linear(o, num_tokens))


class MnistModel(SequenceModel):
    """Sequential MNIST: each pixel embedded by ``Linear(1, E)`` (a raw 0 pixel would equal the RIM's
    null element) -> core -> class logits at every step (the last one is the prediction).

    :param config: the core
    :param embed_size: pixel embedding size E
    :param num_classes: 10
    Input pixels [T, B] or [T, B, 1] in [0, 1]; output logits [T, B, num_classes].
    """

    def __init__(self, config: CoreConfig, embed_size: int = 16, num_classes: int = 10):
        super().__init__(nn.Linear(1, embed_size), embed_size, config, lambda o: nn.Linear(o, num_classes))

    def forward(self, xs: torch.Tensor, state=None):
        return super().forward(xs.unsqueeze(-1) if xs.dim() == 2 else xs, state)


class BallsModel(SequenceModel):
    """Bouncing balls: frame -> MLP encoder -> core -> logits of the next frame's pixels.

    :param frame_size: frames are S x S
    :param config: the core
    :param embed_size: encoder output size E
    Input frames [T, B, S, S] in [0, 1]; output next-frame logits [T, B, S, S].
    """

    def __init__(self, frame_size: int, config: CoreConfig, embed_size: int = 128):
        pixels = frame_size * frame_size
        encoder = nn.Sequential(nn.Flatten(2), nn.Linear(pixels, 256), nn.ReLU(), nn.Linear(256, embed_size), nn.ReLU())
        head = lambda o: nn.Sequential(  # noqa: E731
            nn.Linear(o, 256), nn.ReLU(), nn.Linear(256, pixels), nn.Unflatten(-1, (frame_size, frame_size))
        )
        super().__init__(encoder, embed_size, config, head)
