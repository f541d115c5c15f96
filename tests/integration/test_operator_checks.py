"""An operator that gets something wrong fails the same way in one process (the README's
``Runtime(listener, operator, [sink]).run()``) as in a real ``arroyo operator`` service:
the same error counted per Event, the same one log line, Start and Stop still through."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from arroyo_core import CollectingSink, Event, MemoryListener, Runtime, Start, Stop
from tests.support.ledgers import status
from tests.support.plugins import plugin_env
from tests.support.user_packages.arroyo_testplugins.operators import Misbehaving
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRAMES = 5

# mistake -> (the error counted, what its one log line says)
EXPECTED = {
    "dict": ("ResultError", "Misbehaving.on_event returned a dict; return an Event, None or "
                            "a list of Messages"),
    "array": ("ResultError", "Misbehaving.on_event returned a numpy array (float64 (3, 4)); "
                             "return an Event, None or a list of Messages"),
    "mutate": ("ValueError", "assignment destination is read-only"),
    "datetime": ("ResultError", "Misbehaving.on_event returned an Event the wire cannot "
                                "carry: event metadata: meta['when'] is a datetime"),
}


def messages():
    image = np.arange(12, dtype="<f8").reshape(3, 4)
    return [Start({"run": "r"}),
            *(Event({"run": "r", "frame": i}, {"image": image + i}) for i in range(FRAMES)),
            Stop({"run": "r", "frames_sent": FRAMES})]


@pytest.mark.parametrize("mistake", EXPECTED)
def test_a_mistake_fails_alike_in_one_process_and_as_a_service(mistake, service, ipc, sender,
                                                               receiver, caplog):
    error, line = EXPECTED[mistake]

    # in one process
    sink = CollectingSink()
    with caplog.at_level(logging.ERROR, logger="arroyo_core.runtime"):
        runtime = Runtime(MemoryListener(messages()), Misbehaving(mistake), [sink])
        runtime.run()
    assert [m.kind for m in sink.messages] == ["start", "stop"]
    assert runtime.status().operator.errors == {error: FRAMES}
    failures = [r for r in caplog.records if "operator failed" in r.getMessage()]
    assert len(failures) == 1 and line in caplog.text

    # as a service
    hop1, hop2, stats = ipc(), ipc(), ipc()
    source = sender("@" + hop1)
    operator = service("operator", "--in", ">" + hop1, "--out", "@" + hop2, "--status", stats,
                       "--operator", "arroyo_testplugins.operators:Misbehaving",
                       "-o", f"mistake={mistake}", name=f"misbehaving-{mistake}",
                       env=plugin_env())
    out = receiver(">" + hop2)
    for message in messages():
        source.publish(message)
    assert [m.kind for m in out.take(2)] == ["start", "stop"]
    def after_stop():  # the Stop counts as processed once routed: a moment after it arrives
        ledger = status(stats)
        return ledger if ledger["operator"]["processed"] == 2 else None

    ledger = wait_for(after_stop, 10, "the operator to count the Stop as processed")
    assert ledger["operator"]["errors"] == {error: FRAMES}

    def failure_lines():
        return [x for x in operator.output().splitlines() if "operator failed" in x]

    wait_for(failure_lines, 5, "the operator's error in the log")
    assert len(failure_lines()) == 1
    assert line in operator.output()
    assert "has no attribute" not in operator.output()  # the old symptom
    assert operator.process.poll() is None
