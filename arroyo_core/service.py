"""A service is one Runtime in one of three roles, described by plain config data.

================  ======================  ================  =====================
role              listener                operator          publishers
================  ======================  ================  =====================
``listener``      the ``source`` plug-in  pass-through      links to ``out``
``operator``      a link from ``in``      ``operator``      links to ``out``
``publisher``     a link from ``in``      pass-through      the ``sink`` plug-in
================  ======================  ================  =====================

The keys are the command-line options' long names with ``_`` for ``-``, so a TOML or
YAML file and the command line say the same things.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .budget import split_memory_limit
from .errors import ConfigError
from .link import InputLink, OutputLink
from .queues import MessageQueue
from .runtime import Runtime


@dataclass(frozen=True)
class Role:
    plugin_key: str  # which key names the role's own plug-in
    plugin_kind: str
    default_plugin: str | None
    has_input: bool
    has_output: bool


ROLES = {
    "listener": Role("source", "listener", None, False, True),
    "operator": Role("operator", "operator", "passthrough", True, True),
    "publisher": Role("sink", "publisher", "stats", True, False),
}

KEYS = {"name", "source", "operator", "sink", "options", "in", "in_pattern", "in_options",
        "out", "out_pattern", "out_options", "stats", "queue_size", "queue_bytes",
        "queue_policy", "drain_timeout", "memory_limit"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a service config from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(path.read_text()) or {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    raise ConfigError(f"{path}: config files end in .toml, .yaml or .yml")


def build_runtime(role: str, config: dict[str, Any]) -> Runtime:
    """Build (but do not open) the Runtime that ``config`` describes for ``role``."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    unknown = set(config) - KEYS
    if unknown:
        raise ConfigError(f"[{role}] unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    try:
        config = split_memory_limit(config)  # memory_limit -> link max_bytes, queue_bytes
    except ConfigError as exc:
        raise ConfigError(f"[{config.get('name') or role}] {exc}") from None
    spec = ROLES[role]
    section = config.get("name") or role
    plugin = config.get(spec.plugin_key) or spec.default_plugin
    if plugin is None:
        raise ConfigError(f"[{section}] needs '{spec.plugin_key}'")
    main = registry.build(spec.plugin_kind, plugin, dict(config.get("options") or {}), section)

    def link(key: str, address: Any, cls: type) -> Any:
        if not address:
            raise ConfigError(f"[{section}] needs '{key}' (an address such as tcp://host:5555)")
        options = dict(config.get(f"{key}_options") or {})
        if config.get(f"{key}_pattern"):
            options["pattern"] = config[f"{key}_pattern"]
        try:
            return cls(address, **options)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"[{section}] {key}: {exc}") from None

    listener = link("in", config.get("in"), InputLink) if spec.has_input else main
    operator = main if spec.plugin_kind == "operator" else registry.build(
        "operator", "passthrough", {}, section)
    if spec.has_output:
        outs = config.get("out")
        outs = outs if isinstance(outs, list) else [outs]
        publishers = [link("out", out, OutputLink) for out in outs]
    else:
        publishers = [main]
    queue = MessageQueue(max_items=int(config.get("queue_size", 64)),
                         max_bytes=int(config.get("queue_bytes", 2**30)),
                         policy=config.get("queue_policy", "block"), name="input queue")
    return Runtime(listener, operator, publishers, queue=queue,
                   drain_timeout=float(config.get("drain_timeout", 10.0)),
                   finish_run=spec.has_input)
