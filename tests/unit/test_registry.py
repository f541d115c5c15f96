"""Plug-ins by name: entry points and ``package.module:Class``, and the errors that name them."""

from __future__ import annotations

import pytest

from arroyo_core import ConfigError, Reduce, registry
from arroyo_core.operators import PassThrough
from arroyo_core.sinks import CollectingSink


def test_builtins_are_registered_as_entry_points():
    assert {"passthrough", "reduce", "downsample", "threshold"} <= set(registry.names("operator"))
    assert {"stats", "collect"} <= set(registry.names("publisher"))
    assert "simulated" in registry.names("listener")


def test_resolve_by_entry_point_name_and_by_spec():
    assert registry.resolve("operator", "passthrough") is PassThrough
    assert registry.resolve("operator", "arroyo_core.operators:Reduce") is Reduce
    assert registry.resolve("publisher", "collect") is CollectingSink


@pytest.mark.parametrize("spec, words", [
    ("no-such-operator", ["no operator named 'no-such-operator'", "passthrough"]),
    ("no_such_package.mod:Thing", ["cannot be imported", "no_such_package"]),
    ("arroyo_core.operators:Nope", ["cannot be imported", "Nope"]),
])
def test_unknown_specs_are_config_errors_that_name_them(spec, words):
    with pytest.raises(ConfigError) as info:
        registry.resolve("operator", spec)
    for word in words:
        assert word in str(info.value)


def test_a_name_of_another_kind_is_not_found():
    with pytest.raises(ConfigError, match="no listener named 'reduce'"):
        registry.resolve("listener", "reduce")


def test_build_passes_options_as_keyword_arguments():
    reduce = registry.build("operator", "reduce", {"stats": ["max"], "roi": [0, 2, 0, 2]},
                            "operator")
    assert isinstance(reduce, Reduce) and reduce.stats == ["max"]


@pytest.mark.parametrize("options", [{"unknown_option": 1}, {"stats": ["median"]}])
def test_build_errors_name_the_section_and_spec(options):
    with pytest.raises(ConfigError, match=r"^\[my-section\] operator 'reduce': "):
        registry.build("operator", "reduce", options, "my-section")
