"""RIMConfig: RIM's defaults, a round trip through plain dicts, its checks, and rl and tasks building through it."""

import dataclasses
import inspect
import json

import pytest
import torch

from rims_rl.core import RIM, RIMCell, RIMConfig


def test_fields_are_rims_arguments_with_rims_defaults():
    """One field per RIM argument but input_size (and per keyword-only RIMCell argument), same defaults."""
    expected = {}
    for name, p in inspect.signature(RIM.__init__).parameters.items():
        if name not in ("self", "input_size", "hidden_size") and p.kind is p.POSITIONAL_OR_KEYWORD:
            expected[name] = p.default
    for name, p in inspect.signature(RIMCell.__init__).parameters.items():
        if p.kind is p.KEYWORD_ONLY:
            expected[name] = p.default
    fields = {f.name: f.default for f in dataclasses.fields(RIMConfig)}
    assert fields.pop("hidden_size") == 100  # RIM has no default: the paper's mechanism size
    assert fields == expected


@pytest.mark.parametrize("kw", [{}, dict(cell="gru", num_layers=2, num_input_heads=2, comm_top_k=3)])
def test_build_equals_rim(kw):
    """RIMConfig(...).build(D) is RIM(D, H, ...): same parameter names, shapes and, from one seed, values."""
    config = RIMConfig(**kw)
    torch.manual_seed(0)
    built = config.build(8)
    torch.manual_seed(0)
    direct = RIM(8, config.hidden_size, **kw)
    ours, theirs = dict(built.named_parameters()), dict(direct.named_parameters())
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert built.layers[0].input_attention.dropout.p == direct.layers[0].input_attention.dropout.p == 0.1


def test_round_trip_through_plain_dicts():
    config = RIMConfig(hidden_size=16, num_units=4, k_active=2, cell="gru", comm_top_k=2, query_bias=False)
    data = config.to_dict()
    assert type(data) is dict and list(data) == [f.name for f in dataclasses.fields(RIMConfig)]
    assert RIMConfig.from_dict(json.loads(json.dumps(data))) == config
    assert RIMConfig.from_dict({"k_active": 5}) == RIMConfig(k_active=5)
    assert RIMConfig.from_dict(None) == RIMConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.k_active = 3


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(k_active=7), r"^k_active must be an integer in 1..num_units=6, got 7$"),
        (dict(num_units=3, k_active=4), r"^k_active must be an integer in 1..num_units=3, got 4$"),
        (dict(cell="rnn"), r"^cell must be one of \['gru', 'lstm'\], got 'rnn'$"),
        (dict(input_dropout=1.0), r"^input_dropout must be in \[0, 1\), got 1.0$"),
        (dict(comm_dropout=-0.1), r"^comm_dropout must be in \[0, 1\), got -0.1$"),
        (dict(comm_dropout="0.1"), r"^comm_dropout must be in \[0, 1\), got '0.1'$"),
        (dict(hidden_size=0), r"^hidden_size must be a positive integer, got 0$"),
        (dict(num_layers=1.5), r"^num_layers must be a positive integer, got 1.5$"),
        (dict(input_value_size=0), r"^input_value_size must be a positive integer, got 0$"),
        (dict(comm_top_k=7), r"^comm_top_k must be None or an integer in 1..num_units=6, got 7$"),
        (dict(use_communication="no"), r"^use_communication must be True or False, got 'no'$"),
    ],
)
def test_invalid_values_raise_one_line_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        RIMConfig(**kw)
    with pytest.raises(ValueError, match=match):
        RIMConfig.from_dict(kw)


def test_unknown_key_is_named_with_the_allowed_ones():
    with pytest.raises(
        ValueError, match=r"^unknown RIM argument\(s\) \['num_unit'\] in x.yaml; allowed: \['hidden_size', "
    ):
        RIMConfig.from_dict({"num_unit": 6}, where="x.yaml")
    with pytest.raises(ValueError, match=r"^unknown rim_kwargs \['foo'\]; allowed: .*'query_bias'\]$"):
        RIMConfig.from_dict({"foo": 1}, "rim_kwargs")


# ---------------------------------------------------------------- rl and tasks build through RIMConfig
SHARED = RIMConfig(
    hidden_size=4,
    num_units=3,
    k_active=2,
    cell="gru",
    input_key_size=8,
    input_value_size=8,
    num_input_heads=2,
    input_dropout=0.0,
    comm_key_size=4,
    comm_value_size=4,
    num_comm_heads=2,
    comm_dropout=0.0,
)


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.named_parameters()}


def test_rl_and_tasks_build_the_same_rim_from_one_config():
    from gymnasium import spaces

    from rims_rl.rl import MlpRimPolicy
    from rims_rl.tasks.models import CopyingModel, CoreConfig

    policy = MlpRimPolicy(
        spaces.Box(-1, 1, (3,)), spaces.Discrete(2), lambda _: 1e-3, rim_kwargs=SHARED.to_dict(), net_arch=[]
    )
    assert RIMConfig.from_dict(policy.rim_kwargs) == SHARED
    own = ("hidden_size", "num_units", "k_active", "cell", "input_value_size")
    data = SHARED.to_dict()
    core = CoreConfig(**{k: data.pop(k) for k in own}, rim_kwargs=data)
    assert core.rim_config() == SHARED
    model = CopyingModel(10, core, embed_size=3)  # the policy's features: 3
    expected = shapes(SHARED.build(3))
    assert shapes(policy.lstm_actor.rim) == shapes(model.core.rnn) == expected


def test_resolve_rim_kwargs_checks_through_rim_config_and_returns_the_saved_dict():
    from rims_rl.rl.cores import RIM_KWARGS, resolve_rim_kwargs

    assert RIM_KWARGS == tuple(f.name for f in dataclasses.fields(RIMConfig))
    assert resolve_rim_kwargs(None, 64, 1) == dict(
        num_units=6,
        k_active=5,
        cell="lstm",
        num_input_heads=4,
        input_dropout=0.0,
        comm_dropout=0.0,
        num_layers=1,
        hidden_size=10,
        input_value_size=40,
    )
    assert resolve_rim_kwargs(dict(hidden_size=8, comm_top_k=2), 64, 2)["input_value_size"] == 32
    with pytest.raises(ValueError, match=r"^comm_dropout must be in \[0, 1\), got 1$"):
        resolve_rim_kwargs(dict(comm_dropout=1), 64, 1)
    with pytest.raises(ValueError, match=r"^unknown rim_kwargs \['foo'\]; allowed: \['hidden_size', "):
        resolve_rim_kwargs(dict(foo=1), 64, 1)


def test_task_core_config_checks_its_rim_through_rim_config():
    from rims_rl.tasks.models import CoreConfig

    with pytest.raises(ValueError, match=r"^k_active must be an integer in 1..num_units=6, got 7$"):
        CoreConfig(k_active=7)
    with pytest.raises(ValueError, match=r"^unknown rim_kwargs \['foo'\] in the core config; allowed: "):
        CoreConfig(rim_kwargs=dict(foo=1))
    with pytest.raises(ValueError, match=r"^rim_kwargs \['k_active'\] repeat CoreConfig fields"):
        CoreConfig(rim_kwargs=dict(k_active=3))
    assert CoreConfig(model="lstm", k_active=7).model == "lstm"  # the baselines ignore the RIM's fields
    assert CoreConfig(rim_kwargs=dict(num_layers=2)).rim_config() == RIMConfig(
        hidden_size=32, input_value_size=64, num_layers=2
    )
