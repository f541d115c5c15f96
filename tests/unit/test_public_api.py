"""``arroyo_core.__all__`` is exactly the public API, and every name in it imports."""

from __future__ import annotations

import importlib
import types

import arroyo_core


def test_all_is_sorted_and_unique():
    assert list(arroyo_core.__all__) == sorted(set(arroyo_core.__all__))


def test_every_exported_name_imports_and_is_ours():
    for name in arroyo_core.__all__:
        value = getattr(importlib.import_module("arroyo_core"), name)
        module = getattr(value, "__module__", "")
        assert module.startswith("arroyo_core."), f"{name} comes from {module!r}"


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from arroyo_core import *", namespace)  # noqa: S102 - the very thing under test
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(arroyo_core.__all__)


def test_no_public_name_is_left_out_of_all():
    """A public name in the package namespace that is not a submodule must be in __all__."""
    public = {name for name, value in vars(arroyo_core).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public == set(arroyo_core.__all__)
