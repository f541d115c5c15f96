"""An event builder's settings: an ``in`` table of streams in a config or chain file, its
``join`` options checked before anything opens, and chain files that fill placeholders in
each stream's address."""

from __future__ import annotations

import pytest

from arroyo_core.config import ServiceConfig
from arroyo_core.errors import ConfigError
from arroyo_core.event_input import EventBuilderInput
from arroyo_core.service import build_runtime
from services.chain import parse_chain

STREAMS = {"detector": ">tcp://127.0.0.1:5555", "spectra": ">tcp://127.0.0.1:5556"}


def builder(**more) -> ServiceConfig:
    return ServiceConfig.from_mapping("operator", {"in": STREAMS, "out": "@tcp://*:5558",
                                                   **more})


def test_an_in_table_builds_an_event_builder_input_with_a_link_per_stream():
    runtime = build_runtime(builder(join={"key": "trigger", "timeout": 1.5},
                                    in_options={"hwm": 10}))
    listener = runtime.listener
    assert isinstance(listener, EventBuilderInput)
    assert list(listener.links) == ["detector", "spectra"]
    assert listener.builder.key == "trigger" and listener.builder.timeout == 1.5
    record = listener.status()
    assert set(record.transport["event_builder"]["streams"]) == {"detector", "spectra"}


@pytest.mark.parametrize(("join", "error"), [
    ({"incomplete": "keep"}, "incomplete must be one of"),
    ({"windw": 3}, "window"),
    ({"timeout": "soon"}, "timeout"),
    ({"per_run": ["nope"]}, "per_run names"),
])
def test_bad_join_options_are_one_line_errors_naming_the_service(join, error):
    with pytest.raises(ConfigError, match=error) as caught:
        build_runtime(builder(join=join, name="b"))
    assert str(caught.value).startswith("[b]")


def test_join_without_an_in_table_and_bad_tables_are_errors():
    with pytest.raises(ConfigError, match="join: only for an event builder"):
        build_runtime(ServiceConfig.from_mapping("operator", {
            "in": ">tcp://127.0.0.1:5555", "out": "@tcp://*:5558", "join": {"key": "x"}}))
    with pytest.raises(ConfigError, match="cannot have replicas"):
        build_runtime(builder(replicas=2))
    with pytest.raises(ConfigError, match="table of stream names to addresses"):
        ServiceConfig.from_mapping("operator", {"in": {"detector": 5}, "out": "@tcp://*:1"})


def test_a_chain_fills_each_streams_placeholder_and_finds_its_links():
    chain = parse_chain({"name": "c", "services": {
        "det": {"role": "listener", "source": "stream", "out": "@tcp://*:5555"},
        "spec": {"role": "listener", "source": "stream", "out": "@tcp://*:5556"},
        "builder": {"role": "operator", "in": {"detector": ">tcp://{det}:5555",
                                               "spectra": ">tcp://{spec}:5556"},
                    "out": "@tcp://*:5557"},
        "sink": {"role": "publisher", "in": ">tcp://{builder}:5557"}}})
    assert chain.resolve("builder").in_ == {"detector": ">tcp://127.0.0.1:5555",
                                            "spectra": ">tcp://127.0.0.1:5556"}
    assert chain.problems() == []
    assert chain.order() == ["det", "spec", "builder", "sink"]
    with pytest.raises(ConfigError, match="names {nope}"):
        parse_chain({"name": "c", "services": {"builder": {
            "role": "operator", "in": {"detector": ">tcp://{nope}:5555"}, "out": "@tcp://*:1"}}})
