"""The one configuration language of every command line and config file: dotted ``KEY=VALUE`` overrides
(``--hp``, grid ``hp`` entries) and one unknown-key check.

    parse_overrides(["lr=1e-4", "core.hidden_size=64"])  ->  {"lr": 0.0001, "core": {"hidden_size": 64}}

Values are YAML (so JSON too): ``1e-4`` is a number, ``[50, 200]`` a list, ``"{k: 4}"`` a mapping,
anything else a string. A mapping of overrides (a grid's ``hp: {n_steps: 64}``) is the same thing in
nested form; :func:`as_overrides` accepts either.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

__all__ = [
    "add_hp_argument",
    "as_overrides",
    "build_dataclass",
    "check_keys",
    "merge",
    "parse_overrides",
    "parse_value",
]


def check_keys(data: Iterable[str], allowed: Iterable[str], what: str = "key(s)", where: str | None = None) -> None:
    """Reject keys of ``data`` that are not in ``allowed``, naming them and the allowed ones in one line.

    :param data: the given keys (a mapping's keys are used)
    :param allowed: the accepted keys, listed in this order in the message
    :param what: what the keys are, as the message names them (``"hyperparameter(s)"``, ``"copying option(s)"``)
    :param where: where they were given (a file, ``"the grid"``), or ``None``
    :raises ValueError: ``unknown <what> [<keys>] in <where>; allowed: [<allowed>]``
    """
    allowed = list(allowed)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}{f' in {where}' if where else ''}; allowed: {allowed}")


def build_dataclass(cls, values: Mapping[str, Any] | None, what: str, where: str | None = None):
    """Dataclass ``cls`` built from ``values``, rejecting unknown keys with :func:`check_keys`.

    :param cls: a dataclass type
    :param values: keyword values; ``None`` = all defaults
    :param what: what the keys are, for the message (e.g. ``"copying option(s)"``)
    :param where: where they were given, for the message
    """
    values = dict(values or {})
    check_keys(values, [f.name for f in dataclasses.fields(cls)], what, where)
    return cls(**values)


def parse_value(raw: str) -> Any:
    """A command-line value as YAML (``"1e-4"`` -> 0.0001, ``"[1, 2]"`` -> a list, ``"lstm"`` -> a string;
    empty -> ``None``)."""
    value = yaml.safe_load(raw) if raw else None
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return value


def parse_overrides(items: Iterable[str], flag: str = "--hp") -> dict[str, Any]:
    """``["learning_rate=1e-4", "policy_kwargs.rim_kwargs.k_active=4"]`` -> a nested dict; values are YAML
    (:func:`parse_value`); later items win.

    :param items: ``KEY=VALUE`` strings, ``KEY`` dotted for nested mappings
    :param flag: the option's name, for the error message
    :raises ValueError: an item without ``=`` or with an empty key
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[leaf] = parse_value(raw)
    return out


def as_overrides(value: Iterable[str] | Mapping[str, Any] | None, flag: str = "--hp") -> dict[str, Any]:
    """Overrides given either way, as a nested dict: a list of ``KEY=VALUE`` strings (:func:`parse_overrides`)
    or a mapping (copied). ``None`` -> ``{}``.

    :raises ValueError: neither form, or a malformed item
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return merge({}, value)
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{flag}: overrides are a list of KEY=VALUE strings or a mapping, got {value!r}")
    return parse_overrides(value, flag)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``update``, recursively for mappings on both sides (copies; the inputs are unchanged)."""
    merged = {k: merge({}, v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for key, value in update.items():
        if isinstance(value, Mapping):
            merged[key] = merge(merged[key] if isinstance(merged.get(key), Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def add_hp_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """The ``--hp KEY=VALUE ...`` option of every training command line (repeatable; collected in order).

    :param parser: the command's parser
    :param example: an example for the help text
    """
    parser.add_argument(
        "--hp",
        nargs="*",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"override settings (dotted keys for nested ones, values YAML), e.g. {example}",
    )
