"""A service's settings, described once: :class:`ServiceConfig`.

Every consumer derives from its fields: the options of ``arroyo listener|operator|
publisher``, the keys of a config file (``-c service.toml``), the service tables of a chain
file, and so what ``arroyo run``, supervisor and compose start. Each field's metadata
(:class:`Setting`) says its key, its kind (which values it takes), which roles have it,
and its help text. A key is the option's long name with ``_`` for ``-``::

    name = "centroid"                 # operator.toml, for `arroyo operator -c operator.toml`
    operator = "my_ops:Centroid"
    in = ">tcp://127.0.0.1:5555"
    out = "@tcp://*:5556"
    status = "tcp://127.0.0.1:6001"
    [options]
    threshold = 500

================  ======================  ================  =====================
role              listener                operator          publishers
================  ======================  ================  =====================
``listener``      the ``source`` plug-in  pass-through      links to ``out``
``operator``      a link from ``in``      ``operator``      links to ``out``
``publisher``     a link from ``in``      pass-through      the ``sink`` plug-in
================  ======================  ================  =====================
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .address import FORMS as ADDRESS_FORMS
from .budget import parse_bytes
from .errors import ConfigError
from .queues import POLICIES

log = logging.getLogger(__name__)

Kind = Literal["text", "plugin", "int", "float", "size", "choice", "address", "addresses",
               "inputs", "options"]


@dataclass(frozen=True)
class Role:
    plugin_key: str  # which key names the role's own plug-in
    plugin_kind: str  # its registry kind
    has_input: bool
    has_output: bool


ROLES = {
    "listener": Role("source", "listener", False, True),
    "operator": Role("operator", "operator", True, True),
    "publisher": Role("sink", "publisher", True, False),
}
EVERY = frozenset(ROLES)
INPUT = frozenset(name for name, role in ROLES.items() if role.has_input)
OUTPUT = frozenset(name for name, role in ROLES.items() if role.has_output)


@dataclass(frozen=True)
class Setting:
    """What a :class:`ServiceConfig` field is, for everything derived from it.

    ``flags`` are the command-line spellings when not ``--key-with-dashes``; ``aliases``
    are old keys still read, with a warning; ``shown_default`` is what help says the
    default is when the field's own default (None) stands for something else.
    """

    kind: Kind
    help: str
    roles: frozenset[str] = EVERY
    choices: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    shown_default: str | None = None


def _setting(kind: Kind, default: Any, help: str, **more: Any) -> Any:
    setting = Setting(kind, help, **more)
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"arroyo": setting})
    return field(default=default, metadata={"arroyo": setting})


@dataclass(frozen=True)
class ServiceConfig:
    """Everything one service is built from (see :func:`arroyo_core.service.build_runtime`).

    Construction checks every value (a ConfigError names the section, the key and what it
    expected) and normalises it: ``out`` becomes a tuple, sizes become bytes. Read a
    setting by attribute or by its key: ``config.in_`` is ``config["in"]``.
    """

    role: str
    name: str | None = _setting("text", None, "Name used in logs and the ledger.",
                                shown_default="the role")
    source: str | None = _setting(
        "plugin", None, "Listener plug-in that produces the data.",
        roles=frozenset({"listener"}))
    operator: str | None = _setting(
        "plugin", "passthrough", "Operator plug-in.", roles=frozenset({"operator"}))
    sink: str | None = _setting(
        "plugin", "stats", "Publisher plug-in that sends to the outside world (statistics, "
        "files, another system).", roles=frozenset({"publisher"}))
    options: dict[str, Any] = _setting(
        "options", {}, "Keyword argument for the plug-in. Repeatable.", flags=("-o", "--option"))
    in_: str | dict[str, str] | None = _setting(
        "inputs", None, "Address to receive from: '>' connects (the default), '@' binds; "
        f"e.g. {ADDRESS_FORMS}. In a file, a table of stream names to addresses makes the "
        "service an event builder (docs/event-building.md).", roles=INPUT)
    in_pattern: str | None = _setting(
        "text", None, "How the input receives, for transports with a choice: e.g. pull (one "
        "share of the messages) or sub (every message) [default: the transport's].",
        roles=INPUT)
    join: dict[str, Any] = _setting(
        "options", {}, "How an event builder (an 'in' table of streams) joins their parts: "
        "key, per_run, window, window_bytes, timeout, stop_timeout, incomplete, in_order "
        "(docs/event-building.md). Repeatable.", roles=INPUT, flags=("--join",))
    in_options: dict[str, Any] = _setting(
        "options", {}, "Keyword argument for the input link and its transport (e.g. "
        "max_message_bytes, max_lag, hwm). Repeatable.", roles=INPUT, flags=("--in-option",))
    out: tuple[str, ...] = _setting(
        "addresses", (), "Address to send to: '@' binds (the default), '>' connects; e.g. "
        f"{ADDRESS_FORMS}. Repeatable: one link each.", roles=OUTPUT)
    out_pattern: str | None = _setting(
        "text", None, "How the outputs send, for transports with a choice: e.g. push (blocks "
        "when no peer takes messages) or pub (fans out to every subscriber) [default: the "
        "transport's].", roles=OUTPUT)
    out_options: dict[str, Any] = _setting(
        "options", {}, "Keyword argument for the output links' transport (e.g. hwm, overflow, "
        "peers). Repeatable.", roles=OUTPUT, flags=("--out-option",))
    status: str | None = _setting(
        "address", None, "Address the status socket binds, for 'arroyo status' (e.g. "
        "tcp://127.0.0.1:6000).", aliases=("stats",))
    metrics: str | None = _setting(
        "text", None, "Where the Prometheus metrics endpoint listens (HTTP; HOST:PORT or :PORT, "
        "e.g. 127.0.0.1:9400): the status record's counters as arroyo_* series "
        "(services/metrics.py). Off unless given.")
    queue_size: int = _setting("int", 64, "Messages held between receiving and processing.")
    queue_bytes: int | None = _setting(
        "size", None, "Bytes held between receiving and processing (e.g. 512MiB).",
        shown_default="1 GiB")
    queue_policy: str = _setting(
        "choice", "block", "What a full queue does with a new event.", choices=POLICIES)
    drain_timeout: float = _setting(
        "float", 10.0, "Seconds a stop may take to finish the run and send what is held.")
    replicas: int = _setting(
        "int", 1, "Worker processes that share this service's input as a pool: each run's "
        "events spread over them by credit, its Start and Stop to all (docs/pools.md).",
        roles=INPUT)
    memory_limit: int | None = _setting(
        "size", None, "Bytes the service may hold in queues (e.g. 512MiB), shared equally by "
        "the input link, the queue and the output links; sets their high-water marks from the "
        "message size (docs/reliability.md).")

    def __post_init__(self) -> None:
        where = f"[{self.name if isinstance(self.name, str) else self.role}]"
        values = {item.name: getattr(self, item.name) for item, _ in _SETTINGS}
        for name, value in _checked(self.role, values, where).items():
            object.__setattr__(self, name, value)
        if self.replicas < 1:
            raise ConfigError(f"{where} replicas: expected 1 or more, got {self.replicas}")

    @classmethod
    def from_mapping(cls, role: str, data: Mapping[str, Any], where: str | None = None,
                     also: Collection[str] = ()) -> ServiceConfig:
        """The config ``data`` (a config file's table, or a chain file's service) gives.

        ``where`` names the section in errors (default ``[name]``, else ``[role]``); ``also``
        are keys the caller reads itself, offered when suggesting a misspelt key. ``None``
        values count as not given.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where or f'[{role}]'} expected a table of settings, "
                              f"got {data!r}")
        name = data.get("name")
        where = where or f"[{name if isinstance(name, str) and name else role}]"
        data = _renamed(dict(data), where)
        _check_keys(role, data, where, also)
        values = {_FIELD_OF[key]: value for key, value in data.items() if value is not None}
        return cls(role=role, **_checked(role, values, where))

    @classmethod
    def setting_keys(cls, role: str | None = None) -> list[str]:
        """The config keys ``role`` has (every role's when None), in field order."""
        return [_key(item) for item, setting in _SETTINGS if role is None or role in setting.roles]

    @property
    def section(self) -> str:
        """How errors and logs name this service: its name, else its role."""
        return self.name or self.role

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_OF:
            raise KeyError(key)
        return getattr(self, _FIELD_OF[key])


def settings() -> list[tuple[str, Setting, Field[Any]]]:
    """``(key, setting, field)`` for every setting, in field order (for deriving from)."""
    return [(_key(item), setting, item) for item, setting in _SETTINGS]


def default_of(item: Field[Any]) -> Any:
    """A field's default value."""
    return _default(item)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read the table in a ``.toml``, ``.yaml`` or ``.yml`` file (its values unchecked);
    a ConfigError in one line if it cannot be read or holds no table."""
    path = Path(path)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{path}: config files end in .toml, .yaml or .yml")
    import yaml

    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings (key: value lines), got "
                          f"{_article(type(data).__name__)} {type(data).__name__}")
    return data


def _yaml_problem(exc: Exception) -> str:
    """A YAML syntax error in one line, placed as tomllib places its own."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (at line {mark.line + 1}, column {mark.column + 1})" if mark else problem


_SETTINGS = [(item, item.metadata["arroyo"]) for item in fields(ServiceConfig)
             if "arroyo" in item.metadata]
_FIELD_OF = {item.name.rstrip("_"): item.name for item, _ in _SETTINGS}
_ALIASES = {alias: item.name.rstrip("_") for item, setting in _SETTINGS
            for alias in setting.aliases}


def _key(item: Field[Any]) -> str:
    return item.name.rstrip("_")  # in_ is the key 'in', a Python keyword


def _default(item: Field[Any]) -> Any:
    return item.default_factory() if callable(item.default_factory) else item.default


def _renamed(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with deprecated keys under their new names (and a warning naming it)."""
    for old, new in _ALIASES.items():
        if old not in data:
            continue
        if new in data:
            raise ConfigError(f"{where} '{old}' is the old name of '{new}': give only '{new}'")
        log.warning("%s '%s' is deprecated: call it '%s' (--%s on the command line); the "
                    "old name goes in the next release", where, old, new, new.replace("_", "-"))
        data[new] = data.pop(old)
    return data


def _check_keys(role: str, data: Mapping[str, Any], where: str, also: Collection[str]) -> None:
    unknown = sorted(key for key in data if key not in _FIELD_OF)
    if unknown:
        valid = [*ServiceConfig.setting_keys(role), *also]
        hints = [(key, difflib.get_close_matches(key, valid, n=1)) for key in unknown]
        guesses = [f"'{close[0]}'" + (f" for '{key}'" if len(unknown) > 1 else "")
                   for key, close in hints if close]
        hint = (f"; did you mean {', '.join(guesses)}?" if guesses
                else f"; known: {', '.join(sorted(valid))}")
        raise ConfigError(f"{where} unknown keys {unknown}{hint}")


def _checked(role: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` (by field name) checked for ``role`` and normalised."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    checked = {}
    for item, setting in _SETTINGS:
        if item.name not in values:
            continue
        value = values[item.name]
        if role not in setting.roles:
            if value != _default(item):
                raise ConfigError(f"{where} {_article(role)} {role} has no '{_key(item)}'")
            checked[item.name] = value
        else:
            checked[item.name] = _check(setting, value, f"{where} {_key(item)}")
    return checked


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _check(setting: Setting, value: Any, what: str) -> Any:
    """``value`` checked against ``setting.kind`` and normalised; ConfigError if it does
    not fit, e.g. ``[operator] queue_size: expected an integer, got 'big'``."""
    kind = setting.kind
    if value is None and kind not in ("int", "float", "choice"):
        return value
    if kind in ("text", "plugin", "address"):
        if isinstance(value, str) and value:
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "size":
        try:
            return parse_bytes(value)
        except ConfigError:
            pass
    elif kind == "choice":
        if value in setting.choices:
            return value
    elif kind == "inputs":
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and value and all(
                isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
            return dict(value)
    elif kind == "addresses":
        many = [value] if isinstance(value, str) else value
        if isinstance(many, (list, tuple)) and all(isinstance(v, str) and v for v in many):
            return tuple(many)
    elif kind == "options":
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    raise ConfigError(f"{what}: expected {_expected(setting)}, got {value!r}")


def _expected(setting: Setting) -> str:
    return {
        "text": "a non-empty string",
        "plugin": "a plug-in name or package.module:Class",
        "int": "an integer",
        "float": "a number",
        "size": "a size such as 4096 or '512MiB'",
        "choice": "one of " + ", ".join(setting.choices),
        "address": f"an address such as {ADDRESS_FORMS}",
        "inputs": f"an address such as {ADDRESS_FORMS}, or a table of stream names to "
                  "addresses",
        "addresses": f"an address or a list of addresses such as {ADDRESS_FORMS}",
        "options": "a table of keyword arguments",
    }[setting.kind]
