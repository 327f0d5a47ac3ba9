"""Recurrent actor-critic policies with a RIM core (or an ``nn.LSTM`` core) for sb3-contrib and ``RimPPO``.

The features extractor (NatureCNN, flatten or combined) feeds the recurrent core; the actor and value
heads read the core's output, the concatenated mechanism states ``[B, U*H]`` (not the features: the
authors' released Atari code makes that mistake and its RIM gets no gradient).

Shapes: T time, B batch, L layers, U mechanisms, H hidden size of a mechanism, S = U*H.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule

from .cores import CORE_INITS, LstmCore, RimCore, lstm_size_matching, resolve_rim_kwargs
from .extractors import SpatialNatureCNN

CORES = ("rim", "lstm")
INPUT_ELEMENTS = ("vector", "spatial")
#: ``lstm_hidden_size`` value that sizes an LSTM core to the parameter count of a RIM core
MATCH_RIM = "match_rim"
#: the state size a RIM to be matched gets when its ``rim_kwargs`` give no ``hidden_size``
DEFAULT_STATE_SIZE = 256


def resolve_critic(
    shared_lstm: bool, enable_critic_lstm: bool | None, shared_critic_grad: bool | None
) -> tuple[bool, bool, bool]:
    """The critic's configuration from what the user gave (``None`` = not given).

    Nothing given: the critic has its own recurrent core (sb3-contrib's default). ``shared_lstm=True``:
    one core for both heads, trained by both losses unless ``shared_critic_grad=False``. A memoryless
    critic (``enable_critic_lstm=False`` without ``shared_lstm``) only when asked for, with a warning.

    :return: ``(shared_lstm, enable_critic_lstm, shared_critic_grad)``
    :raises ValueError: a contradictory combination
    """
    shared_lstm = bool(shared_lstm)
    if enable_critic_lstm is None:
        enable_critic_lstm = not shared_lstm
    if shared_lstm and enable_critic_lstm:
        raise ValueError("shared_lstm=True needs enable_critic_lstm=False (a shared core, or a separate one)")
    if shared_critic_grad is None:
        shared_critic_grad = shared_lstm
    if shared_critic_grad and not shared_lstm:
        raise ValueError("shared_critic_grad=True needs shared_lstm=True (and enable_critic_lstm=False)")
    if not (shared_lstm or enable_critic_lstm):
        warnings.warn(
            "enable_critic_lstm=False without shared_lstm: the critic is memoryless (a Linear on one "
            "observation's features); leave both unset for a recurrent critic",
            stacklevel=3,
        )
    return shared_lstm, enable_critic_lstm, shared_critic_grad


def _num_elements(extractor: BaseFeaturesExtractor, input_elements: str) -> int:
    """N, the input elements the extractor's features hold: 1, or its ``num_elements`` for ``"spatial"``."""
    if input_elements != "spatial":
        return 1
    num_elements = getattr(extractor, "num_elements", None)
    if num_elements is None:
        raise ValueError(
            f"input_elements='spatial' needs a features extractor with a num_elements "
            f"attribute (e.g. SpatialNatureCNN), got {type(extractor).__name__}"
        )
    return num_elements


def parameter_counts(policy: torch.nn.Module) -> dict[str, int]:
    """Parameters of a policy by part, recorded with every run so that a comparison states its sizes.

    :param policy: a :class:`RimActorCriticPolicy` or any SB3 actor-critic policy
    :return: ``core`` (recurrent cores, actor and critic; 0 without), ``features_extractor`` (all of them),
        ``heads`` (the rest: MLPs, action and value heads) and ``total``
    """

    def count(module: torch.nn.Module | None) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    core = count(getattr(policy, "lstm_actor", None)) + count(getattr(policy, "lstm_critic", None))
    if getattr(policy, "share_features_extractor", True):
        features = count(policy.features_extractor)
    else:
        features = count(policy.pi_features_extractor) + count(policy.vf_features_extractor)
    total = count(policy)
    return {"core": core, "features_extractor": features, "heads": total - core - features, "total": total}


class RimActorCriticPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic policy with a RIM core (Goyal et al., ICLR 2021).

    Everything else is ``RecurrentActorCriticPolicy``: state resets on ``episode_start``,
    ``predict(obs, state, episode_start)`` returning the new state. The state travels as sb3-contrib's
    ``(h, c)`` pair of ``[L, B, U*H]`` tensors (a zero ``c`` for GRU cells), so plain
    ``sb3_contrib.RecurrentPPO`` runs this policy unchanged; ``RimPPO`` trains it faster.

    **The critic reads the recurrent state.** By default it has its own core (``enable_critic_lstm=True``,
    sb3-contrib's default): on the memory suite (``benchmarks/ppo_memory.py``, RepeatPreviousEasy, 3 seeds,
    100k steps) the LSTM agent reached a mean return of 0.44 so, against -0.31 with one core shared by both
    heads and trained by both losses (CleanRL's LSTM agent; ``shared_lstm=True``, cheaper: one core). Asking
    for ``enable_critic_lstm=False`` without ``shared_lstm`` gives sb3-contrib's memoryless critic (a
    ``Linear`` on one observation's features) and a warning: the value then cannot depend on the past.

    :param observation_space: observation space
    :param action_space: action space
    :param lr_schedule: learning rate schedule
    :param core: ``"rim"`` (default) or ``"lstm"``: an ``nn.LSTM`` of ``lstm_hidden_size`` instead, the
        baseline of the Atari comparison trained by the same code (docs/design.md §5)
    :param core_init: the initialisation scheme of the core, the same for both core kinds:
        ``"orthogonal"`` (default; :func:`~rims_rl.rl.cores.orthogonal_init_`: orthogonal weight
        matrices, zero biases, CleanRL's LSTM scheme) or ``"torch"`` (each module's PyTorch default)
    :param rim_kwargs: RIM arguments, e.g. ``dict(num_units=6, k_active=5, hidden_size=43, cell="lstm")``;
        defaults are the paper's RL setting (6 mechanisms, 5 active, 4 input heads, no dropout, input
        values 4 x ``hidden_size``) and ``hidden_size = lstm_hidden_size // num_units``. Allowed keys:
        ``cores.RIM_KWARGS``. Keep the dropouts at 0: rollouts run in eval mode and PPO's ratio assumes
        the same network. With ``core="lstm", lstm_hidden_size="match_rim"``: the RIM to match
    :param input_elements: ``"vector"``: the features are one input element (paper); ``"spatial"``:
        each position of the last convolution's feature map is an element (``CnnRimPolicy`` only, or an
        extractor with a ``num_elements`` attribute), so mechanisms compete for image regions
    :param lstm_hidden_size: LSTM core size; for the RIM core the default total state size. With
        ``core="lstm"``, ``"match_rim"`` sizes the LSTM to have about as many parameters as the RIM core of
        ``rim_kwargs`` on the same features (a parameter-matched baseline; the default matches state sizes)
    :param n_lstm_layers: layers of the LSTM core; the default ``num_layers`` of the RIM core
    :param lstm_kwargs: ``nn.LSTM`` arguments of the LSTM core (``bias``, ``dropout``)
    :param critic_core: the kind of the critic's own core, ``"rim"`` or ``"lstm"``; ``None`` (default): the
        same kind as ``core``. ``"lstm"`` with a RIM actor gives the critic an ``nn.LSTM`` of the actor's state
        size U*H (the value needs memory, not the mechanisms; only the actor's core acts)
    :param shared_lstm: one core for both heads (default ``False``)
    :param enable_critic_lstm: a separate critic core; ``None`` (default): ``not shared_lstm``
    :param shared_critic_grad: with a shared core, let the value loss backpropagate into it too (one
        recurrent base trained by both losses); ``None`` (default): ``True`` with a shared core.
        ``False`` is sb3-contrib's ``shared_lstm``: the core is trained by the policy loss only
    :param truncate_bptt: in training, backpropagate through at most this many steps of a sequence: the
        state is detached every ``truncate_bptt`` steps (values and log-probabilities are unchanged).
        ``None`` (default): through whole sequences, as sb3-contrib does. Plain ``RecurrentPPO`` trains on
        sequences of up to ``n_steps``; ``RimPPO``'s chunks of ``sequence_length`` already bound them.
    :param kwargs: the other ``RecurrentActorCriticPolicy`` arguments (``net_arch``, ``ortho_init``,
        ``features_extractor_class``...)
    """

    #: features extractor used when none is given, per ``input_elements``
    default_extractors: ClassVar[dict[str, type[BaseFeaturesExtractor]]] = {"vector": FlattenExtractor}

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *,
        core: str = "rim",
        rim_kwargs: dict[str, Any] | None = None,
        input_elements: str = "vector",
        lstm_hidden_size: int | str = 256,
        n_lstm_layers: int = 1,
        lstm_kwargs: dict[str, Any] | None = None,
        shared_lstm: bool = False,
        enable_critic_lstm: bool | None = None,
        shared_critic_grad: bool | None = None,
        truncate_bptt: int | None = None,
        core_init: str = "orthogonal",
        critic_core: str | None = None,
        **kwargs,
    ):
        if core not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {core!r}")
        if critic_core is not None and critic_core not in CORES:
            raise ValueError(f"critic_core must be None or one of {CORES}, got {critic_core!r}")
        if critic_core == "rim" and core != "rim":
            raise ValueError(f"critic_core='rim' needs core='rim' (the RIM's configuration), got core={core!r}")
        if core_init not in CORE_INITS:
            raise ValueError(f"core_init must be one of {sorted(CORE_INITS)}, got {core_init!r}")
        if input_elements not in INPUT_ELEMENTS:
            raise ValueError(f"input_elements must be one of {INPUT_ELEMENTS}, got {input_elements!r}")
        match_rim = lstm_hidden_size == MATCH_RIM
        if match_rim and core != "lstm":
            raise ValueError(
                f"lstm_hidden_size={MATCH_RIM!r} sizes an LSTM core: it needs core='lstm', got core={core!r}"
            )
        if not match_rim and (
            isinstance(lstm_hidden_size, bool) or not isinstance(lstm_hidden_size, int) or lstm_hidden_size < 1
        ):
            raise ValueError(f"lstm_hidden_size must be a positive integer or {MATCH_RIM!r}, got {lstm_hidden_size!r}")
        if core == "lstm" and rim_kwargs and not match_rim:
            raise ValueError(
                f"rim_kwargs apply to core='rim' only (or to core='lstm' with lstm_hidden_size="
                f"{MATCH_RIM!r}), got core='lstm' with rim_kwargs={rim_kwargs}"
            )
        shared_lstm, enable_critic_lstm, shared_critic_grad = resolve_critic(
            shared_lstm, enable_critic_lstm, shared_critic_grad
        )
        if critic_core not in (None, core) and not enable_critic_lstm:
            raise ValueError(
                f"critic_core={critic_core!r} needs a critic core of its own (enable_critic_lstm=True, "
                f"shared_lstm=False), got shared_lstm={shared_lstm}, enable_critic_lstm={enable_critic_lstm}"
            )
        if truncate_bptt is not None and (
            isinstance(truncate_bptt, bool) or not isinstance(truncate_bptt, int) or truncate_bptt < 1
        ):
            raise ValueError(f"truncate_bptt must be a positive number of steps or None, got {truncate_bptt!r}")
        if kwargs.get("features_extractor_class") is None:
            if input_elements not in self.default_extractors:
                raise ValueError(
                    f"input_elements={input_elements!r} needs an image policy (CnnRimPolicy) or a "
                    "features_extractor_class with a num_elements attribute"
                )
            kwargs["features_extractor_class"] = self.default_extractors[input_elements]
        self.core_kind, self.input_elements, self.shared_critic_grad = core, input_elements, shared_critic_grad
        self.critic_core_kind = critic_core or core
        self.core_init = core_init
        self.truncate_bptt = truncate_bptt
        if match_rim:  # size the LSTM from the RIM it matches, on the features this policy will have
            extractor = kwargs["features_extractor_class"](
                observation_space, **(kwargs.get("features_extractor_kwargs") or {})
            )
            rim = resolve_rim_kwargs(rim_kwargs, DEFAULT_STATE_SIZE, n_lstm_layers)
            with torch.device("meta"):
                rim_core = RimCore(int(extractor.features_dim), _num_elements(extractor, input_elements), rim)
            lstm_hidden_size = lstm_size_matching(
                sum(p.numel() for p in rim_core.parameters()), int(extractor.features_dim), n_lstm_layers
            )
        self.rim_kwargs = resolve_rim_kwargs(rim_kwargs, lstm_hidden_size, n_lstm_layers) if core == "rim" else None
        self.core_lstm_kwargs = dict(lstm_kwargs or {})
        self._lstm_hidden_size, self._n_lstm_layers = lstm_hidden_size, n_lstm_layers
        if core == "rim":  # what the parent sizes the heads (and its throwaway nn.LSTMs) with
            state_size = self.rim_kwargs["num_units"] * self.rim_kwargs["hidden_size"]
            layers = self.rim_kwargs["num_layers"]
        else:
            state_size, layers = lstm_hidden_size, n_lstm_layers
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            lstm_hidden_size=state_size,
            n_lstm_layers=layers,
            lstm_kwargs=lstm_kwargs,
            shared_lstm=shared_lstm,
            enable_critic_lstm=enable_critic_lstm,
            **kwargs,
        )

        num_elements = _num_elements(self.features_extractor, input_elements)
        # Replace the parent's nn.LSTMs by the cores. Built after super().__init__(), they get no
        # orthogonal init from SB3: both cores initialise themselves by the same scheme
        # (cores.orthogonal_init_); and the optimizer must be rebuilt to see them.
        self.lstm_actor = self._build_core(num_elements, self.core_kind)
        self.lstm_critic = self._build_core(num_elements, self.critic_core_kind) if self.enable_critic_lstm else None
        self.lstm_hidden_state_shape = (layers, 1, state_size)  # (L, 1, S), for predict()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self.last_active: torch.Tensor | None = None

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        """SB3's, with ``features_dim`` a Python int (for a ``MultiDiscrete`` space SB3 gives a numpy
        integer, which ``nn.LSTM`` and the cores refuse)."""
        extractor = super().make_features_extractor()
        extractor._features_dim = int(extractor.features_dim)
        return extractor

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; weights of another configuration raise a ``ValueError`` that
        names this policy's core configuration and the first mismatch."""
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as error:
            detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
            raise ValueError(f"these weights do not fit this policy ({self.core_description()}): {detail}") from None

    def core_description(self) -> str:
        """This policy's recurrent core in one line, e.g. ``core='rim', rim_kwargs={...}``."""
        critic = "" if self.critic_core_kind == self.core_kind else f", critic_core={self.critic_core_kind!r}"
        if self.core_kind == "rim":
            return f"core='rim', rim_kwargs={self.rim_kwargs}{critic}"
        return f"core='lstm', lstm_hidden_size={self._lstm_hidden_size}, n_lstm_layers={self._n_lstm_layers}{critic}"

    def _build_core(self, num_elements: int, kind: str) -> RimCore | LstmCore:
        """A core of ``kind`` (``"rim"`` or ``"lstm"``) on this policy's features, initialised by ``core_init``;
        an LSTM has the policy's state size and layers (U*H and the RIM's layers beside a RIM actor: the states
        share one layout)."""
        if kind == "rim":
            core = RimCore(self.features_dim, num_elements, self.rim_kwargs)
        else:  # the parent's state shape (L, 1, S), from the sizes given to it above
            layers, _, size = self.lstm_hidden_state_shape
            core = LstmCore(self.features_dim, size, layers, **self.core_lstm_kwargs)
        core.truncate_bptt = self.truncate_bptt  # read by _process_sequence, a static method in sb3-contrib
        return CORE_INITS[self.core_init](core)

    @staticmethod
    def _process_sequence(
        features: torch.Tensor,
        lstm_states: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        lstm: RimCore | LstmCore,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run a core over ``n_seq`` sequences in one call, episode starts resetting the state inside.

        :param features: [n_seq * T, F], sequence-major (sb3-contrib's layout)
        :param lstm_states: (h, c), each [L, n_seq, S], the state before the first step
        :param episode_starts: [n_seq * T]
        :param lstm: the core
        :return: core output [n_seq * T, S] and the final (h, c)
        """
        n_seq = lstm_states[0].shape[1]
        xs = features.reshape(n_seq, -1, features.shape[-1]).transpose(0, 1)  # (n_seq * T, F) -> (T, n_seq, F)
        starts = episode_starts.reshape(n_seq, -1).transpose(0, 1)  # (n_seq * T,) -> (T, n_seq)
        step = lstm.truncate_bptt if torch.is_grad_enabled() and lstm.truncate_bptt else xs.shape[0]
        outs, states = [], lstm_states
        for start in range(0, xs.shape[0], step):  # one piece unless BPTT is truncated
            if start:
                states = tuple(s.detach() for s in states)
            out, states, _ = lstm(xs[start : start + step], states, starts[start : start + step])
            outs.append(out)
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.transpose(0, 1).flatten(0, 1), states  # (T, n_seq, S) -> (n_seq * T, S)

    def forward(
        self, obs: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RNNStates]:
        """sb3-contrib's acting step; also keeps the actor core's active mask [T, B, U] in ``last_active``
        (``None`` for the LSTM core), which ``RimPPO``'s rollout buffer stores."""
        out = super().forward(obs, lstm_states, episode_starts, deterministic)
        self.last_active = self.lstm_actor.last_active
        return out

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """sb3-contrib's, except with ``shared_critic_grad``: the value head reads the shared core's
        output without ``detach``.

        :param obs: observations [n_seq * T, ...]
        :param actions: actions [n_seq * T, ...]
        :param lstm_states: states before the first step, (h, c) per head, each [L, n_seq, S]
        :param episode_starts: [n_seq * T]
        :return: values [n_seq * T, 1], log-probabilities and entropies [n_seq * T]
        """
        if not self.shared_critic_grad:
            return super().evaluate_actions(obs, actions, lstm_states, episode_starts)
        features = self.extract_features(obs)  # shared_lstm implies a shared features extractor
        latent, _ = self._process_sequence(features, lstm_states.pi, episode_starts, self.lstm_actor)
        distribution = self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent))
        values = self.value_net(self.mlp_extractor.forward_critic(latent))
        return values, distribution.log_prob(actions), distribution.entropy()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # the stock recurrent policy saves none of its own arguments, so policy.save/load loses them
        data = super()._get_constructor_parameters()
        data.update(
            core=self.core_kind,
            rim_kwargs=self.rim_kwargs,
            input_elements=self.input_elements,
            lstm_hidden_size=self._lstm_hidden_size,
            n_lstm_layers=self._n_lstm_layers,
            lstm_kwargs=self.core_lstm_kwargs,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            shared_critic_grad=self.shared_critic_grad,
            truncate_bptt=self.truncate_bptt,
            core_init=self.core_init,
            critic_core=self.critic_core_kind,
            share_features_extractor=self.share_features_extractor,
        )
        return data


class MlpRimPolicy(RimActorCriticPolicy):
    """RIM policy for vector observations (features: the flattened observation). See :class:`RimActorCriticPolicy`."""


class CnnRimPolicy(RimActorCriticPolicy):
    """RIM policy for images: NatureCNN features as one element, or with ``input_elements="spatial"``
    each position of its last feature map (:class:`SpatialNatureCNN`). See :class:`RimActorCriticPolicy`."""

    default_extractors: ClassVar[dict[str, type[BaseFeaturesExtractor]]] = {
        "vector": NatureCNN,
        "spatial": SpatialNatureCNN,
    }


class MultiInputRimPolicy(RimActorCriticPolicy):
    """RIM policy for Dict observations (SB3's CombinedExtractor). See :class:`RimActorCriticPolicy`."""

    default_extractors: ClassVar[dict[str, type[BaseFeaturesExtractor]]] = {"vector": CombinedExtractor}
