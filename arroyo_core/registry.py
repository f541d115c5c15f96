"""Finds plug-ins by name: ``package.module:Class`` or a registered entry-point name.

Built-ins are registered through the same entry points (``arroyo.listeners``,
``arroyo.operators``, ``arroyo.publishers``) that a user's package can add to.

:func:`build` checks everything a plug-in can be checked for before it is used, so a
service's ``--check`` finds what its start would: that the spec imports, that it is the
kind of plug-in asked for (a sink must be a Publisher), that the modules it declares in
``requires`` are installed, and its options against its signature
(:mod:`arroyo_core.arguments`). A plug-in that needs an optional package says so::

    class HDF5Sink(Publisher):
        requires = {"h5py": "arroyo-stream[hdf5]"}   # module: what to pip install
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import traceback
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .arguments import check_arguments
from .arroyopy_plugins import adapt
from .components import Listener, Operator, Publisher
from .errors import ConfigError

GROUPS = {"listener": "arroyo.listeners", "operator": "arroyo.operators",
          "publisher": "arroyo.publishers", "transport": "arroyo.transports"}
# kind: (its base class, what a service calls it)
KINDS: dict[str, tuple[type, str]] = {
    "listener": (Listener, "source"), "operator": (Operator, "operator"),
    "publisher": (Publisher, "sink")}


def names(kind: str) -> list[str]:
    """Registered plug-in names of one kind."""
    return sorted(ep.name for ep in entry_points(group=GROUPS[kind]))


def resolve(kind: str, spec: str) -> Any:
    """Return the class (or factory) that ``spec`` names; raise ConfigError if none."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ConfigError:
            raise
        except Exception as exc:  # anything a user's module raises while importing
            raise ConfigError(f"{kind} {spec!r} cannot be imported: {_one_line(exc)}") from None
        try:
            return getattr(module, attribute)
        except AttributeError:
            public = [name for name in vars(module) if not name.startswith("_")]
            close = difflib.get_close_matches(attribute, public, n=1)
            hint = f"; did you mean {module_name}:{close[0]}?" if close else ""
            raise ConfigError(f"{kind} {spec!r} cannot be imported: module {module_name!r} "
                              f"has no {attribute!r}{hint}") from None
    for ep in entry_points(group=GROUPS[kind], name=spec):
        try:
            return ep.load()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{kind} {spec!r} ({ep.value}) cannot be imported: "
                              f"{_one_line(exc)}") from None
    raise ConfigError(f"no {kind} named {spec!r}; registered: {', '.join(names(kind)) or 'none'}"
                      " (or give package.module:Class)")


def check(kind: str, spec: str, factory: Any) -> None:
    """Raise a ConfigError (not naming ``spec``) if ``factory`` is another kind of plug-in
    than ``kind``, or needs a module that is not installed."""
    if kind in KINDS and isinstance(factory, type):
        base, word = KINDS[kind]
        usable = issubclass(factory, base) or (
            kind == "operator" and callable(getattr(factory, "process", None)))
        if not usable:
            what = next((f"{_article(other)} {other} ({_article(b.__name__)} {b.__name__}) "
                         f"given as {_article(word)} {word}"
                         for b, other in KINDS.values() if issubclass(factory, b)),
                        f"not {_article(word)} {word}")
            raise ConfigError(f"{what}; {_article(word)} {word} is a subclass of "
                              f"arroyo_core.{base.__name__}")
    requires = getattr(factory, "requires", None)
    if isinstance(requires, Mapping):
        for module, install in requires.items():
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"needs {module}, which is not installed: "
                                  f"pip install '{install}'")


def build(kind: str, spec: str, options: dict[str, Any], section: str) -> Any:
    """Instantiate the plug-in ``spec`` with ``options`` as keyword arguments, once it
    passed :func:`check` and its options :func:`~arroyo_core.arguments.check_arguments`."""
    try:
        factory = resolve(kind, spec)
    except ConfigError as exc:
        raise ConfigError(f"[{section}] {exc}") from None
    factory = adapt(kind, factory)  # an arroyopy listener or publisher: in its adapter
    try:
        check(kind, spec, factory)
        plugin = factory(**check_arguments(factory, options))
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"[{section}] {spec}: {exc}") from None
    if kind in KINDS and not isinstance(factory, type):  # a factory function: check its result
        try:
            check(kind, spec, type(plugin))
        except ConfigError as exc:
            raise ConfigError(f"[{section}] {spec}: {exc}") from None
    return plugin


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _one_line(exc: BaseException) -> str:
    """An import failure in one line, with the place in the user's code where it happened."""
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} ({exc.filename}, line {exc.lineno})"
    if isinstance(exc, ModuleNotFoundError):
        return str(exc)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
