"""A user's operator, named as package.module:Class with keyword arguments from
``-o key=value``, runs as a service; when its ``process()`` raises, the error is logged
and counted and the stream goes on."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core.message import Event, Start, Stop
from tests.support.ledgers import status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_user_operator_gets_its_options_and_survives_its_own_errors(service, ipc, sender,
                                                                    receiver):
    hop1, hop2, stats = ipc(), ipc(), ipc()
    source = sender("@" + hop1)
    operator = service(
        "operator", "--in", ">" + hop1, "--out", "@" + hop2, "--status", stats,
        "--operator", "arroyo_testplugins.operators:Flaky",
        "-o", "every=3", "-o", "message=kaboom", "-o", "scale=0.5", "-o", "tags=[a, 1]",
        name="flaky", env=plugin_env())
    out = receiver(">" + hop2)

    frames = 30
    image = np.arange(12, dtype="<f8").reshape(3, 4)
    source.publish(Start({"run": "r"}))
    for frame in range(frames):
        source.publish(Event({"run": "r", "frame": frame}, {"image": image}))
    source.publish(Stop({"run": "r", "frames_sent": frames}))

    survivors = [frame for frame in range(frames) if frame % 3]
    got = out.take(len(survivors) + 2)
    assert [m.kind for m in got] == ["start"] + ["event"] * len(survivors) + ["stop"]
    events = got[1:-1]
    assert [m.meta["frame"] for m in events] == survivors
    for event in events:
        assert event.meta["every"] == 3 and event.meta["message"] == "kaboom"
        assert event.meta["scale"] == 0.5 and event.meta["tags"] == ["a", 1]
        assert event.meta["arg_types"] == ["int", "str", "float"]
        assert np.array_equal(event.payload["image"], image * 0.5)

    # (the runtime counts a message processed once it has sent on what came of it)
    wait_for(lambda: status(stats)["operator"]["processed"] >= len(survivors) + 2, 5,
             "the Stop counted")
    ledger = status(stats)
    assert ledger["operator"]["type"] == "Flaky"
    assert ledger["operator"]["errors"] == {"ValueError": frames // 3}
    assert ledger["operator"]["processed"] == len(survivors) + 2
    assert ledger["input"]["received"] == frames + 2
    assert ledger["outputs"][0]["sent"] == len(survivors) + 2

    def failure_lines():
        return [line for line in operator.output().splitlines() if "operator failed" in line]

    wait_for(failure_lines, 5, "the operator's error in the log")
    assert len(failure_lines()) == 1  # logged once, then counted
    assert "ValueError: kaboom at frame 0" in operator.output()  # with its traceback
    assert operator.process.poll() is None


def test_user_operator_that_cannot_be_imported_fails_the_service(service, ipc):
    process = service("operator", "--in", ">" + ipc(), "--out", "@" + ipc(),
                      "--operator", "arroyo_testplugins.operators:NoSuchClass",
                      name="missing", ready=False, env=plugin_env())
    assert process.process.wait(15) == 2
    assert "arroyo_testplugins.operators:NoSuchClass" in process.output()


def test_user_operator_given_an_unknown_option_fails_the_service(service, ipc):
    process = service("operator", "--in", ">" + ipc(), "--out", "@" + ipc(),
                      "--operator", "arroyo_testplugins.operators:Flaky", "-o", "colour=red",
                      name="badoption", ready=False, env=plugin_env())
    assert process.process.wait(15) == 2
    output = process.output()
    assert "Flaky" in output and "colour" in output
