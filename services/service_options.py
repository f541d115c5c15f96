"""The options of ``arroyo listener|operator|publisher``, derived from the settings of
:class:`arroyo_core.config.ServiceConfig`: each setting a role has is one option, with
its key (``_`` as ``-``), kind, help and default from there. Also reads ``KEY=VALUE``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field
from typing import Any

import click
import yaml

from arroyo_core import registry
from arroyo_core.config import ROLES, Setting, default_of, settings

SCALARS = (str, int, float, bool, type(None))
METAVARS = {"address": "ADDRESS", "inputs": "ADDRESS", "addresses": "ADDRESS", "size": "SIZE",
            "options": "KEY=VALUE", "plugin": "NAME"}
TYPES: dict[str, click.ParamType] = {"int": click.INT, "float": click.FLOAT}


def read_value(text: str) -> Any:
    """VALUE of ``KEY=VALUE``: what YAML reads when that is a scalar, a list of scalars or
    a ``{...}`` table (``10``, ``0.5``, ``[512,512]``, ``'010'`` for the string), else the
    text as it is (``@tcp://*:5555``, ``*.h5``, ``a: b``, ``2024-01-01``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, list) and all(isinstance(v, SCALARS) for v in value):
        return value
    if isinstance(value, dict) and text.lstrip().startswith("{"):
        return value
    return value if isinstance(value, SCALARS) else text


def parse_pairs(pairs: Sequence[str], hint: str) -> dict[str, Any]:
    """``{key: value}`` from ``KEY=VALUE`` pairs (``-`` in a key read as ``_``); a pair
    without ``=`` is a usage error naming the option ``hint``."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=hint)
        options[key.strip().replace("-", "_")] = read_value(value)
    return options


def _flags(key: str, setting: Setting) -> list[str]:
    return list(setting.flags or (f"--{key.replace('_', '-')}",))


def _help(role: str, setting: Setting, item: Field[Any]) -> str:
    text = setting.help
    if setting.kind == "plugin":
        kind = ROLES[role].plugin_kind
        text += (f" A registered name ({', '.join(registry.names(kind))}) or "
                 "package.module:Class (a module next to the -c file or in the current "
                 "directory is found). With --help, lists its options.")
    if setting.kind == "options" and "-o" in setting.flags:
        text += " VALUE is read as YAML when it can be (10, 0.5, [512,512]), else as text."
    default = setting.shown_default or default_of(item)
    if default not in (None, (), {}):
        shown = f"{default:g}" if isinstance(default, float) else default
        text += f" [default: {shown}]"
    return text


def service_params(role: str) -> list[click.Parameter]:
    """One click option per setting ``role`` has (and a hidden one per deprecated name)."""
    params: list[click.Parameter] = []
    for key, setting, item in settings():
        if role not in setting.roles:
            continue
        kwargs: dict[str, Any] = {"metavar": METAVARS.get(setting.kind)}
        if setting.kind in ("options", "addresses"):
            kwargs["multiple"] = True
        if setting.kind == "choice":
            kwargs = {"type": click.Choice(setting.choices)}
        elif setting.kind in TYPES:
            kwargs = {"type": TYPES[setting.kind]}
        params.append(click.Option([*_flags(key, setting), key],
                                   help=_help(role, setting, item), **kwargs))
        for alias in setting.aliases:
            params.append(click.Option([f"--{alias.replace('_', '-')}", alias], hidden=True,
                                       **kwargs))
    return params


def given_settings(role: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given on the command line (click's ``values``, by key), as a config
    file would say them: ``KEY=VALUE`` pairs as tables, repeated addresses as lists."""
    given: dict[str, Any] = {}
    for key, setting, _ in settings():
        if role not in setting.roles:
            continue
        for name in (key, *setting.aliases):
            value = values.get(name)
            if value is None or value == ():
                continue
            if setting.kind == "options":
                value = parse_pairs(value, "/".join(_flags(key, setting)))
            elif setting.kind == "addresses":
                value = list(value)
            given[name] = value
    return given


def merge(data: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """A config file's ``data`` with the command line's ``given`` settings winning: tables
    of keyword arguments are merged key by key, anything else replaced (under a
    deprecated name too)."""
    merged = dict(data)
    names = {key: (key, *setting.aliases) for key, setting, _ in settings()}
    names.update({alias: names[key] for key, setting, _ in settings() for alias in setting.aliases})
    for key, value in given.items():
        before = merged.get(key)
        for name in names[key]:
            merged.pop(name, None)
        merged[key] = ({**before, **value} if isinstance(value, dict)
                       and isinstance(before, Mapping) else value)
    return merged
