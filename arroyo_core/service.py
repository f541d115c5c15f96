"""A service is one Runtime in one of three roles, built from a :class:`ServiceConfig`
(the roles and every setting are described in :mod:`arroyo_core.config`)."""

from __future__ import annotations

from typing import Any

from . import registry
from .arguments import check_arguments
from .budget import split_memory_limit
from .config import ROLES, ServiceConfig
from .dispatch import DispatchLink
from .errors import ConfigError
from .event_input import EventBuilderInput, stream_addresses
from .link import InputLink, OutputLink
from .queues import MessageQueue
from .runtime import Runtime

QUEUE_BYTES = 2**30  # the queue's byte bound when neither queue_bytes nor memory_limit says


def build_runtime(config: ServiceConfig) -> Runtime:
    """Build (but do not open) the Runtime that ``config`` describes."""
    spec = ROLES[config.role]
    section = config.section
    try:  # memory_limit -> the links' max_bytes and queue_bytes, where those are not set
        shares = split_memory_limit({key: value for key, value in (
            ("memory_limit", config.memory_limit), ("in", config.in_), ("out", list(config.out)),
            ("queue_bytes", config.queue_bytes), ("in_options", config.in_options),
            ("out_options", config.out_options)) if value})
    except ConfigError as exc:
        raise ConfigError(f"[{section}] {exc}") from None
    plugin = config[spec.plugin_key]
    if plugin is None:
        raise ConfigError(f"[{section}] needs '{spec.plugin_key}'")
    main = registry.build(spec.plugin_kind, plugin, dict(config.options), section)

    def link(key: str, address: str | None, cls: type) -> Any:
        if not address:
            raise ConfigError(f"[{section}] needs '{key}' (an address such as "
                              "@tcp://*:5555 or >tcp://host:5555)")
        options = dict(shares.get(f"{key}_options") or {})
        pattern = config[f"{key}_pattern"]
        if pattern:
            options["pattern"] = pattern
        try:
            return cls(address, **check_arguments(cls, options, given=("address",)))
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"[{section}] {key}: {exc}") from None

    streams = stream_addresses(config.in_)
    if streams is not None:
        listener = event_input(section, streams, shares, config)
    else:
        if config.join:
            raise ConfigError(f"[{section}] join: only for an event builder, whose 'in' is a "
                              "table of stream names to addresses")
        listener = link("in", str(config.in_ or ""), InputLink) if spec.has_input else main
    operator = main if spec.plugin_kind == "operator" else registry.build(
        "operator", "passthrough", {}, section)
    if spec.has_output:
        # "dispatch" is the link step's, not only a transport's: spreading a run over a
        # pool of workers (arroyo_core.dispatch)
        output = DispatchLink if config.out_pattern == "dispatch" else OutputLink
        publishers = [link("out", out, output) for out in config.out or (None,)]
    else:
        publishers = [main]
    queue = MessageQueue(max_items=config.queue_size,
                         max_bytes=shares.get("queue_bytes") or QUEUE_BYTES,
                         policy=config.queue_policy, name="input queue")
    return Runtime(listener, operator, publishers, queue=queue,
                   drain_timeout=config.drain_timeout, finish_run=spec.has_input)


def event_input(section: str, streams: dict[str, str], shares: dict[str, Any],
                config: ServiceConfig) -> EventBuilderInput:
    """The input of an event builder: a link per stream (docs/event-building.md)."""
    if config.replicas > 1:
        raise ConfigError(f"[{section}] an event builder (an 'in' table of streams) cannot "
                          "have replicas: its streams' parts must meet in one process")
    options = dict(shares.get("in_options") or {})
    if config.in_pattern:
        options["pattern"] = config.in_pattern
    try:
        check_arguments(InputLink, options, given=("address",))
        return EventBuilderInput(streams, options, config.join)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"[{section}] {exc}") from None
