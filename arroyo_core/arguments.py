"""Keyword arguments checked against the signature they are for, before the call.

A plug-in's options (``-o factor=4``, ``[options]`` in a config file) and a link's or a
transport's options are keyword arguments of a class. :func:`check_arguments` checks them
against its ``__init__`` before it is called: an unknown name (with a suggestion and the
valid names), a missing required one, and each value against the parameter's annotation::

    int, float, bool, str             a value of that type; a number given as text ("10",
                                      from an address's query) is read as one, and a
                                      number given for a str becomes its text
    list[X], tuple[X, ...], Sequence[X], Iterable[X]
                                      a list (or tuple) of X
    dict[str, X], Mapping[str, X]     a table of X
    Literal["mean", "sum"]            one of the values
    X | None, Optional[X], X | Y      any of them

Anything else (``Any``, no annotation, a class of the plug-in's own) is passed as given,
for the plug-in to check. A ``**options`` parameter is followed to the base class's
``__init__`` (the usual ``super().__init__(**options)``); where it leads nowhere, names
the signature does not list are passed on unchecked.

:func:`parameters` gives the same description, with each parameter's text from the
numpydoc ``Parameters`` section of the class (or function) docstring, to ``--help``.
"""

from __future__ import annotations

import collections.abc as abc
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from .errors import ConfigError

EMPTY = inspect.Parameter.empty
SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
_HEADER = re.compile(r"^\*{0,2}[A-Za-z_]\w*(\s*,\s*\*{0,2}[A-Za-z_]\w*)*\s*(:.*)?$")


@dataclass(frozen=True)
class Parameter:
    """One keyword argument a callable takes: its type (``EMPTY`` if unknown), its default
    (``EMPTY`` if it must be given) and its description from the docstring."""

    name: str
    annotation: Any = EMPTY
    default: Any = EMPTY
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is EMPTY


class _Mismatch(Exception):
    """A value does not fit an annotation (turned into a ConfigError by the caller)."""


def parameters(factory: Callable[..., Any],
               given: Collection[str] = ()) -> tuple[list[Parameter], bool]:
    """The keyword parameters ``factory`` takes, leaving out those named in ``given`` (which
    the caller passes itself), and whether it also takes names it does not list."""
    found: dict[str, Parameter] = {}
    if not isinstance(factory, type):
        params, open_ = _own(factory, _docs(factory), first=True)
        return [p for p in params if p.name not in given], open_
    first = True
    for cls in factory.__mro__:
        if cls is object:
            return [p for p in found.values() if p.name not in given], not first
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        docs = {**_docs(init), **_docs(cls)}
        params, open_ = _own(init, docs, first, skip_self=True)
        for param in params:
            found.setdefault(param.name, param)
        if not open_:
            break
        first = False
    return [p for p in found.values() if p.name not in given], False


def check_arguments(factory: Callable[..., Any], options: Mapping[str, Any],
                    given: Collection[str] = ()) -> dict[str, Any]:
    """``options`` checked against ``factory``'s parameters (except those in ``given``) and
    converted where :mod:`this module <arroyo_core.arguments>` says; raise a ConfigError
    such as ``option factor: expected an integer, got 'abc'``."""
    params, open_ = parameters(factory, given)
    by_name = {param.name: param for param in params}
    unknown = [key for key in options if key not in by_name]
    if unknown and not open_:
        raise ConfigError(_unknown(unknown, list(by_name)))
    missing = [param.name for param in params if param.required and param.name not in options]
    if missing:
        raise ConfigError(f"missing option{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(name) for name in missing)}")
    checked = {}
    for key, value in options.items():
        param = by_name.get(key)
        if param is None:
            checked[key] = value
            continue
        try:
            checked[key] = _convert(param.annotation, value)
        except _Mismatch:
            raise ConfigError(f"option {key}: expected {describe(param.annotation)}, "
                              f"got {value!r}") from None
    return checked


def describe(annotation: Any) -> str:
    """What a value of ``annotation`` is, for an error: ``an integer``, ``one of 'a', 'b'``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(arg) for arg in args))
    if annotation in _NAMES:
        return _NAMES[annotation][0]
    if origin in SEQUENCES or annotation in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} items"
        item = args[0] if args else EMPTY
        return f"a list of {_NAMES[item][1]}" if item in _NAMES else "a list"
    if origin in MAPPINGS or annotation is dict:
        return "a table"
    return "a value"


def metavar(annotation: Any) -> str:
    """How ``--help`` shows what a value of ``annotation`` is: ``INTEGER``, ``[mean|sum]``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "[" + "|".join(str(arg) for arg in args) + "]"
    if origin in (Union, types.UnionType):
        named = [metavar(arg) for arg in args if arg is not type(None)]
        return "|".join(dict.fromkeys(named))
    if annotation in _NAMES:
        return _NAMES[annotation][2]
    if origin in SEQUENCES or annotation in (list, tuple):
        item = args[0] if args else EMPTY
        return f"[{_NAMES[item][2]},...]" if item in _NAMES else "LIST"
    if origin in MAPPINGS or annotation is dict:
        return "TABLE"
    return "VALUE"


# annotation: (an error's word, the plural, --help's word)
_NAMES: dict[Any, tuple[str, str, str]] = {
    int: ("an integer", "integers", "INTEGER"),
    float: ("a number", "numbers", "NUMBER"),
    bool: ("true or false", "true/false values", "BOOLEAN"),
    str: ("a string", "strings", "TEXT"),
    type(None): ("null", "nulls", "NULL"),
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _convert(annotation: Any, value: Any) -> Any:
    """``value`` as ``annotation`` takes it (see the module docstring), or _Mismatch."""
    if annotation in (EMPTY, Any, object):
        return value
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        raise _Mismatch
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _convert(arg, value)
            except _Mismatch:
                continue
        raise _Mismatch
    if annotation in _NAMES:
        return _scalar(annotation, value)
    if origin in SEQUENCES or annotation in (list, tuple):
        return _sequence(origin or annotation, args, value)
    if origin in MAPPINGS or annotation is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        item = args[1] if len(args) == 2 else EMPTY
        return {key: _convert(item, v) for key, v in value.items()}
    return value  # a type of the plug-in's own: it checks


def _scalar(annotation: type, value: Any) -> Any:
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
    elif isinstance(value, bool):
        pass  # True is neither a number nor a string
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)  # `-o consumer=1` is read as a number
    elif isinstance(value, int) or (annotation is float and isinstance(value, float)):
        return value
    elif isinstance(value, str):
        try:
            return annotation(value.strip())  # "10" from an address's query
        except ValueError:
            pass
    raise _Mismatch


def _sequence(kind: Any, args: tuple[Any, ...], value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(arg, item) for arg, item in zip(args, value, strict=True))
    item = args[0] if args else EMPTY
    items = [_convert(item, one) for one in value]
    return tuple(items) if kind is tuple else items


def _own(function: Callable[..., Any], docs: dict[str, str], first: bool,
         skip_self: bool = False) -> tuple[list[Parameter], bool]:
    """A function's own keyword parameters (after the first class in a walk up the bases,
    only those with defaults: the ones without are given by the subclass) and whether it
    takes ``**options``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return [], True
    hints = _hints(function)
    params, open_ = [], False
    for index, param in enumerate(signature.parameters.values()):
        if skip_self and index == 0:
            continue
        if param.kind is param.VAR_KEYWORD:
            open_ = True
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            if first or param.default is not EMPTY:
                params.append(Parameter(param.name, hints.get(param.name, EMPTY),
                                        param.default, docs.get(param.name, "")))
    return params, open_


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; one that cannot be resolved is left out (not checked)."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # a name only imported for type checkers, say: resolve one by one
        pass
    found = {}
    namespace = getattr(function, "__globals__", {})
    for name, text in getattr(function, "__annotations__", {}).items():
        try:
            found[name] = eval(text, namespace) if isinstance(text, str) else text  # noqa: S307
        except Exception:
            continue
    return found


def _docs(obj: Any) -> dict[str, str]:
    """``{name: text}`` from the numpydoc ``Parameters`` section of ``obj``'s docstring
    (``a, b`` headers give both names the text; ``name : type`` headers are read too)."""
    doc = obj.__doc__ if isinstance(obj.__doc__, str) else ""
    lines = inspect.cleandoc(doc).splitlines()
    for start in range(len(lines) - 1):
        if lines[start].strip() == "Parameters" and set(lines[start + 1].strip()) == {"-"}:
            break
    else:
        return {}
    found: dict[str, list[str]] = {}
    names: list[str] = []
    rest = lines[start + 2:]
    for index, line in enumerate(rest):
        if not line.strip():
            following = next((x for x in rest[index + 1:] if x.strip()), "")
            if not following.startswith((" ", "\t")) and not _HEADER.match(following):
                break  # a paragraph after the list ends it
            continue
        if index + 1 < len(rest) and set(rest[index + 1].strip()) == {"-"}:
            break  # the next section's title
        if not line.startswith((" ", "\t")):
            if not _HEADER.match(line):
                break
            names = [n.strip().lstrip("*") for n in line.split(":", 1)[0].split(",")]
            for name in names:
                found[name] = []
        else:
            for name in names:
                found[name].append(line.strip())
    return {name: " ".join(text) for name, text in found.items()}


def _unknown(unknown: list[str], valid: list[str]) -> str:
    plural = "s" if len(unknown) > 1 else ""
    named = ", ".join(repr(key) for key in unknown)
    if not valid:
        return f"unknown option{plural} {named}: it takes no options"
    guesses = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            guesses.append(f"'{close[0]}'" + (f" for '{key}'" if plural else ""))
    hint = f"; did you mean {', '.join(guesses)}?" if guesses else ""
    return f"unknown option{plural} {named}{hint} (valid: {', '.join(valid)})"
