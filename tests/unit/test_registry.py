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
    with pytest.raises(ConfigError, match=r"^\[my-section\] reduce: "):
        registry.build("operator", "reduce", options, "my-section")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Writes ``NAME.py`` with the given source into a directory on the import path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        return name

    return write


USER_OPERATOR = """
from arroyo_core import Operator, Publisher

class Centroid(Operator):
    def __init__(self, threshold: float = 0.0):
        super().__init__()

class Plain:
    def process(self, message):
        return message

class NeedsH5(Publisher):
    requires = {"no_such_module_for_arroyo": "arroyo-stream[nothing]"}
    def publish(self, message):
        pass
"""


@pytest.mark.parametrize("kind,attribute,message", [
    ("publisher", "Centroid", "[s] {m}:Centroid: an operator (an Operator) given as a sink; a "
                              "sink is a subclass of arroyo_core.Publisher"),
    ("listener", "Centroid", "[s] {m}:Centroid: an operator (an Operator) given as a source; a "
                             "source is a subclass of arroyo_core.Listener"),
    ("operator", "NeedsH5", "[s] {m}:NeedsH5: a sink (a Publisher) given as an operator; an "
                           "operator is a subclass of arroyo_core.Operator"),
    ("publisher", "Plain", "[s] {m}:Plain: not a sink; a sink is a subclass of "
                           "arroyo_core.Publisher"),
    ("publisher", "NeedsH5", "[s] {m}:NeedsH5: needs no_such_module_for_arroyo, which is not "
                             "installed: pip install 'arroyo-stream[nothing]'"),
])
def test_a_plugin_of_another_kind_or_without_its_packages_is_refused(user_module, kind,
                                                                    attribute, message):
    module = user_module("kinds_of_plugins", USER_OPERATOR)
    with pytest.raises(ConfigError) as info:
        registry.build(kind, f"{module}:{attribute}", {}, "s")
    assert str(info.value) == message.format(m=module)


def test_a_plain_class_with_process_is_an_operator(user_module):
    module = user_module("plain_operator", USER_OPERATOR)
    assert registry.build("operator", f"{module}:Plain", {}, "s")


@pytest.mark.parametrize("source,message", [
    ("def broken(:\n", "invalid syntax ({path}, line 1)"),
    ("import numpy\nx = 1 / 0\n", "ZeroDivisionError: division by zero ({path}, line 2)"),
    ("from arroyo_core import Operator\nclass Centroid(Operator):\n    pass\n",
     "module '{name}' has no 'Centriod'; did you mean {name}:Centroid?"),
], ids=["syntax", "raises", "misspelt"])
def test_a_user_module_that_does_not_import_is_one_line_naming_where(user_module, tmp_path,
                                                                     source, message):
    name = user_module(f"user_ops_{abs(hash(source))}", source)
    with pytest.raises(ConfigError) as info:
        registry.build("operator", f"{name}:Centriod", {}, "op")
    text = message.format(path=tmp_path / f"{name}.py", name=name)
    assert str(info.value) == f"[op] operator '{name}:Centriod' cannot be imported: {text}"


@pytest.mark.parametrize("kind,spec,options,message", [
    ("operator", "downsample", {"factor": "abc"}, "option factor: expected an integer, got 'abc'"),
    ("operator", "downsample", {"factor": 0}, "option factor: expected 1 or more, got 0"),
    ("operator", "downsample", {"method": "median"},
     "option method: expected one of 'mean', 'sum', got 'median'"),
    ("operator", "downsample", {"factr": 4},
     "unknown option 'factr'; did you mean 'factor'? (valid: factor, method)"),
    ("operator", "threshold", {"level": "high"}, "option level: expected a number, got 'high'"),
    ("operator", "reduce", {"stats": "sum"}, "option stats: expected a list of strings, got 'sum'"),
    ("operator", "reduce", {"roi": [0, 4]}, "option roi: expected [y0, y1, x0, x1], got [0, 4]"),
    ("listener", "simulated", {"frames": "ten"}, "option frames: expected an integer, got 'ten'"),
    ("listener", "simulated", {"frames": -1}, "option frames: expected 0 or more, got -1"),
    ("listener", "simulated", {"rate": -5}, "option rate: expected frames per second, 0 (as "
                                            "fast as the chain takes them) or more, got -5"),
    ("listener", "simulated", {"shape": [0, 4]},
     "option shape: expected a list of sizes of 1 or more, got [0, 4]"),
    ("listener", "simulated", {"shape": 512}, "option shape: expected a list of integers, got 512"),
    ("listener", "simulated", {"dtype": "pixels"},
     "option dtype: 'pixels' is not a numpy dtype (e.g. uint16, float32)"),
    ("listener", "simulated", {"runs": 0}, "option runs: expected 1 or more, got 0"),
    ("publisher", "stats", {"interval": -1},
     "option interval: expected 0 or more seconds, got -1"),
    ("publisher", "collect", {"x": 1}, "unknown option 'x': it takes no options"),
])
def test_built_in_plugins_refuse_nonsense_values(kind, spec, options, message):
    with pytest.raises(ConfigError) as info:
        registry.build(kind, spec, options, "sec")
    assert str(info.value) == f"[sec] {spec}: {message}"
