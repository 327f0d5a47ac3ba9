"""The one override language and unknown-key check shared by every command line and config file."""

from dataclasses import dataclass

import pytest

from rims_rl.utils.config import as_overrides, build_dataclass, check_keys, merge, parse_overrides


def test_dotted_overrides_become_a_nested_mapping_of_yaml_values():
    assert parse_overrides(
        [
            "lr=1e-4",
            "core.hidden_size=64",
            "options.test_gaps=[50, 200]",
            "core.cell=gru",
            "grad_clip=null",
            "policy_kwargs.rim_kwargs={k_active: 4}",
        ]
    ) == {
        "lr": 1e-4,
        "core": {"hidden_size": 64, "cell": "gru"},
        "options": {"test_gaps": [50, 200]},
        "grad_clip": None,
        "policy_kwargs": {"rim_kwargs": {"k_active": 4}},
    }
    assert parse_overrides(["a=1", "a=2"]) == {"a": 2}  # later wins
    for bad in ("n_steps", "=3", "a..b=1"):
        with pytest.raises(ValueError, match=r"--hp expects key=value, got"):
            parse_overrides([bad])


def test_a_mapping_and_a_list_of_strings_are_the_same_overrides():
    mapping = {"n_steps": 64, "policy_kwargs": {"rim_kwargs": {"k_active": 4}}}
    assert as_overrides(["n_steps=64", "policy_kwargs.rim_kwargs.k_active=4"]) == mapping == as_overrides(mapping)
    assert as_overrides(None) == {}
    with pytest.raises(ValueError, match="a list of KEY=VALUE strings or a mapping"):
        as_overrides("n_steps=64")


def test_merge_is_recursive_and_copies():
    base = {"a": 1, "p": {"x": 1, "y": 2}}
    merged = merge(base, {"p": {"y": 3}, "b": 2})
    assert merged == {"a": 1, "p": {"x": 1, "y": 3}, "b": 2}
    merged["p"]["x"] = 9
    assert base == {"a": 1, "p": {"x": 1, "y": 2}}


def test_unknown_keys_are_named_with_the_allowed_ones_in_one_line():
    with pytest.raises(ValueError) as err:
        check_keys({"lr": 1, "stepz": 2}, ["lr", "steps"], "train config key(s)", "config.json")
    assert str(err.value) == "unknown train config key(s) ['stepz'] in config.json; allowed: ['lr', 'steps']"

    @dataclass
    class Options:
        gap: int = 1

    assert build_dataclass(Options, {"gap": 3}, "option(s)") == Options(3)
    with pytest.raises(ValueError, match=r"^unknown option\(s\) \['gapp'\]; allowed: \['gap'\]$"):
        build_dataclass(Options, {"gapp": 3}, "option(s)")
