"""Routing rules of a pool's dispatch: which worker gets an Event, by rule.

Written in the chain file as the feeding service's ``out_options`` (the runtime's dispatch
link applies them, :mod:`arroyo_core.dispatch`)::

    out_options = { route = [
        { when = { kind = "calibration" }, to = "all" },     # broadcast: every worker
        { when = { quality = ["bad", "empty"] }, to = "none" },  # discard (counted)
        { to = "affinity", key = "position" },               # one worker per position
    ] }

Rules are tried in order and the first whose ``when`` matches decides; an Event no rule
matches goes by credit (the worker with the most room). ``when`` compares metadata keys
(``parts.encoder.frame`` reaches into nested tables) with a value, or with any of a list of
values; a rule without ``when`` matches every Event.

- ``to = "credit"``: by credit (the default).
- ``to = "all"``: a copy to every worker (each copy is one of its share; the stage after
  the pool sees the frame once per worker, counted as duplicates by its run ledger).
- ``to = "none"``: not sent; counted as dropped by policy (``dropped`` in the run's Stop),
  so no ledger after the pool counts it lost.
- ``to = "affinity"``: every Event with the same value of ``key`` goes to the same worker
  (chosen by credit the first time a value is seen, again if that worker is gone); it
  waits for that worker's credit rather than go elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

TARGETS = ("credit", "all", "none", "affinity")
_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """One routing rule: where Events whose metadata match ``when`` go."""

    to: str
    when: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # affinity's metadata key

    def matches(self, meta: Mapping[str, Any]) -> bool:
        for path, wanted in self.when.items():
            value = lookup(meta, path)
            if value is _ABSENT:
                return False
            if isinstance(wanted, list) and not isinstance(value, list):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True


def lookup(meta: Mapping[str, Any], path: str) -> Any:
    """``meta[a][b]`` for ``path`` ``a.b`` (a key with dots in it is tried first)."""
    if path in meta:
        return meta[path]
    value: Any = meta
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def parse_rules(rules: Any) -> list[Rule]:
    """The rules a ``route`` option holds; ConfigError saying which rule is wrong."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise ConfigError("option route: expected a list of rules such as "
                          "[{when = {kind = \"calibration\"}, to = \"all\"}]")
    parsed = []
    for index, rule in enumerate(rules):
        where = f"option route, rule {index + 1}"
        if not isinstance(rule, Mapping) or set(rule) - {"when", "to", "key"}:
            raise ConfigError(f"{where}: expected a table of 'when', 'to' and 'key', "
                              f"got {rule!r}")
        to = rule.get("to", "credit")
        if to not in TARGETS:
            raise ConfigError(f"{where}: 'to' must be one of {', '.join(TARGETS)}, got {to!r}")
        when = rule.get("when") or {}
        if not isinstance(when, Mapping) or not all(isinstance(k, str) for k in when):
            raise ConfigError(f"{where}: 'when' is a table of metadata keys and values")
        key = rule.get("key")
        if (to == "affinity") != isinstance(key, str):
            raise ConfigError(f"{where}: 'key' (a metadata key) goes with to = \"affinity\", "
                              "and only with it")
        parsed.append(Rule(to, dict(when), key))
    return parsed


def decide(rules: list[Rule], meta: Mapping[str, Any]) -> tuple[str, Any]:
    """``(to, affinity value)`` for an Event's metadata: the first matching rule's choice;
    an affinity rule whose key the Event lacks goes by credit."""
    for rule in rules:
        if rule.matches(meta):
            if rule.to == "affinity":
                value = lookup(meta, rule.key or "")
                if value is _ABSENT:
                    return "credit", None
                return "affinity", repr(value)  # any msgpack value, made hashable
            return rule.to, None
    return "credit", None
