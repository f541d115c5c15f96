"""Finds plug-ins by name: ``package.module:Class`` or a registered entry-point name.

Built-ins are registered through the same entry points (``arroyo.listeners``,
``arroyo.operators``, ``arroyo.publishers``) that a user's package can add to.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError

GROUPS = {"listener": "arroyo.listeners", "operator": "arroyo.operators",
          "publisher": "arroyo.publishers", "transport": "arroyo.transports"}


def names(kind: str) -> list[str]:
    """Registered plug-in names of one kind."""
    return sorted(ep.name for ep in entry_points(group=GROUPS[kind]))


def resolve(kind: str, spec: str) -> Any:
    """Return the class (or factory) that ``spec`` names; raise ConfigError if none."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{kind} {spec!r} cannot be imported: {exc}") from None
    for ep in entry_points(group=GROUPS[kind], name=spec):
        return ep.load()
    raise ConfigError(f"no {kind} named {spec!r}; registered: {', '.join(names(kind)) or 'none'}"
                      " (or give package.module:Class)")


def build(kind: str, spec: str, options: dict[str, Any], section: str) -> Any:
    """Instantiate the plug-in ``spec`` with ``options`` as keyword arguments."""
    try:
        factory = resolve(kind, spec)
    except ConfigError as exc:
        raise ConfigError(f"[{section}] {exc}") from None
    try:
        return factory(**options)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"[{section}] {kind} {spec!r}: {exc}") from None
