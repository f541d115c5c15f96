"""arroyopy's ``blocks:`` pipeline files, read and run by Arroyo's runtime.

::

    blocks:
      - name: scale                       # one process: its operator, listener, publishers
        description: scale every image
        operator:  {class: mypkg.ops.Scale, kwargs: {factor: 2}}
        listeners: [{class: arroyo_core.ZMQListener, args: [127.0.0.1, 5555]}]
        publishers:
          - {class: arroyo_core.ZMQPublisher, args: ["*", 5556]}
        status: ipc:///tmp/scale.status   # Arroyo's: where `arroyo status` reads its ledger

A file holding one block may give its keys at the top level instead of under ``blocks``.
Each part is ``{class, args, kwargs}``; ``class`` is ``package.module.Class`` (or
``package.module:Class``), an Arroyo class or one written against arroyopy's base classes
(run in :mod:`arroyo_core.arroyopy_plugins`' adapters, an arroyopy listener given the
operator). ``${VAR}``, ``${VAR:-default}`` and ``$VAR`` are read from the environment before
the file is parsed. Unlike arroyopy, a key this module does not know and a class that does
not import are errors that name the block and the key. Nothing here binds a socket:
:func:`check_block` imports and matches arguments, :func:`build_runtime` constructs.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arroyo_core import registry
from arroyo_core.arroyopy_plugins import adapt, is_arroyopy
from arroyo_core.errors import ConfigError
from arroyo_core.link import InputLink
from arroyo_core.merged_input import MergedInput
from arroyo_core.runtime import Runtime

TOP_KEYS = {"blocks"}
BLOCK_KEYS = {"name", "description", "operator", "listeners", "publishers", "status",
              "drain_timeout"}
PART_KEYS = {"class", "args", "kwargs"}
PART_KINDS = {"operator": "operator", "listeners": "listener", "publishers": "publisher"}
TOP_LINE = re.compile(r"^(blocks|operator)\s*:", re.MULTILINE)  # a pipeline file's keys
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


@dataclass(frozen=True)
class Part:
    """One ``{class, args, kwargs}`` of a block; ``where`` names it in errors."""

    kind: str
    where: str
    spec: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Block:
    """One block: an operator, its listeners, its publishers, run as one process."""

    name: str
    description: str
    operator: Part
    listeners: tuple[Part, ...]
    publishers: tuple[Part, ...]
    status: str | None = None
    drain_timeout: float = 10.0


def _expand(text: str, path: Path) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        found = os.environ.get(name, match.group(2))
        if found is None:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(f"{path}:{line}: environment variable {name} is not set")
        return found

    return VARIABLE.sub(value, text)


def read(path: str | Path) -> Any:
    """The YAML document in ``path``, environment variables filled in."""
    path = Path(path)
    try:
        return yaml.safe_load(_expand(path.read_text(), path))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def is_blocks_file(path: str | Path) -> bool:
    """Whether ``path`` is an arroyopy pipeline file rather than a chain file (which is
    TOML, or YAML with ``services``): YAML with ``blocks``, or a block at the top level."""
    if Path(path).suffix not in (".yaml", ".yml"):
        return False
    try:
        data = read(path)
    except ConfigError:  # let the loader that reads it say what is wrong
        return TOP_LINE.search(Path(path).read_text()) is not None
    return isinstance(data, dict) and "services" not in data and (
        "blocks" in data or "operator" in data)


def _part(kind: str, where: str, data: Any) -> Part:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with 'class' (and 'args', 'kwargs')")
    unknown = sorted(set(data) - PART_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: class, args, kwargs)")
    spec, args, kwargs = data.get("class"), data.get("args", []), data.get("kwargs", {})
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: 'class' must be a class path such as mypkg.ops.MyOperator")
    if not isinstance(args, list):
        raise ConfigError(f"{where}.args: expected a list")
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}.kwargs: expected a table")
    if ":" not in spec and "." in spec:  # arroyopy's spelling, package.module.Class
        module, _, name = spec.rpartition(".")
        spec = f"{module}:{name}"
    return Part(kind, where, spec, tuple(args), dict(kwargs))


def _block(index: int, data: Any) -> Block:
    if not isinstance(data, dict):
        raise ConfigError(f"block {index}: expected a table")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"block {index}: needs a 'name'")
    where = f"block {name!r}"
    unknown = sorted(set(data) - BLOCK_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: "
                          f"{', '.join(sorted(BLOCK_KEYS))})")
    if "operator" not in data:
        raise ConfigError(f"{where}: needs an 'operator'")
    parts: dict[str, list[Part]] = {}
    for key in ("listeners", "publishers"):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise ConfigError(f"{where}: '{key}' must be a list")
        parts[key] = [_part(PART_KINDS[key], f"{where} {key}[{i}]", item)
                      for i, item in enumerate(items)]
    if not parts["listeners"]:
        raise ConfigError(f"{where}: 'listeners' must name at least one listener")
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise ConfigError(f"{where}: 'status' must be an address such as ipc:///tmp/x")
    drain_timeout = data.get("drain_timeout", 10.0)
    if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, (int, float)):
        raise ConfigError(f"{where}: 'drain_timeout' must be a number of seconds")
    return Block(name, str(data.get("description") or ""),
                 _part("operator", f"{where} operator", data["operator"]),
                 tuple(parts["listeners"]), tuple(parts["publishers"]), status,
                 float(drain_timeout))


def load_blocks(path: str | Path) -> list[Block]:
    """The blocks of an arroyopy pipeline file (checked as data; nothing is imported)."""
    data = read(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected 'blocks:' or a block's keys at the top level")
    if "blocks" in data:
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r} beside 'blocks'")
        items = data["blocks"]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{path}: 'blocks' must be a list of blocks")
    else:
        items = [data]
    blocks = [_block(i, item) for i, item in enumerate(items)]
    names = [block.name for block in blocks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: two blocks are named {name!r}")
    return blocks


def _factory(part: Part) -> Any:
    """The class (or adapter factory) ``part`` names, imported and checked, not called."""
    try:
        found = registry.resolve(part.kind, part.spec)
    except ConfigError as exc:
        raise ConfigError(f"{part.where}.class: {exc}") from None
    kind = part.kind
    arroyopy_base = {"operator": "Operator", "listener": "Listener", "publisher": "Publisher"}
    if not is_arroyopy(found, arroyopy_base[kind]):
        try:
            registry.check(kind, part.spec, found)
        except ConfigError as exc:
            raise ConfigError(f"{part.where}.class: {part.spec}: {exc}") from None
    if kind == "listener" and "operator" in part.kwargs:
        raise ConfigError(f"{part.where}.kwargs: 'operator' is given to each listener by "
                          "the block; remove it")
    return adapt(kind, found)


def check_block(block: Block) -> None:
    """Import every class of ``block`` and match its args and kwargs to its signature,
    constructing nothing (so nothing binds)."""
    for part in (block.operator, *block.listeners, *block.publishers):
        factory = _factory(part)
        try:
            inspect.signature(factory).bind(*part.args, **part.kwargs)
        except TypeError as exc:
            raise ConfigError(f"{part.where}: {part.spec}: {exc}") from None
        except ValueError:  # a builtin without a signature: constructing will tell
            pass


def _build(part: Part) -> Any:
    factory = _factory(part)
    try:
        return factory(*part.args, **part.kwargs)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{part.where}: {part.spec}: {exc}") from None


def build_runtime(block: Block) -> Runtime:
    """The Runtime that runs ``block`` (constructed, not opened)."""
    check_block(block)
    operator = _build(block.operator)
    listeners = [_build(part) for part in block.listeners]
    publishers = [_build(part) for part in block.publishers]
    listener = listeners[0] if len(listeners) == 1 else MergedInput(
        {f"listeners[{i}] {type(one).__name__}": one for i, one in enumerate(listeners)})
    return Runtime(listener, operator, publishers, drain_timeout=block.drain_timeout,
                   finish_run=all(isinstance(one, InputLink) for one in listeners))
