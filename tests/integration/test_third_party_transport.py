"""A transport from another package links two real services with no change to Arroyo:
``frames://`` (tests/support/third_party, plain TCP sockets, no ZeroMQ) is found by
its own distribution's ``arroyo.transports`` entry point, as a user's would be."""

from __future__ import annotations

import pytest

from services.status_server import query_status
from tests.support.plugins import THIRD_PARTY, plugin_env
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration


def test_a_transport_registered_by_another_package_links_two_services(service, ipc):
    sink_status = ipc()
    env = plugin_env(THIRD_PARTY)  # the transport's distribution, and arroyo_testplugins
    # the source binds a port the system picks (its READY line says which), then waits
    # for the sink to connect
    source = service("listener", "--source", "simulated", "-o", "shape=[32,32]",
                     "-o", "frames=300", "-o", "rate=0", "--out", "@frames://127.0.0.1:0",
                     name="source", env=env)
    address = source.bound("out").removeprefix("frames://")
    service("publisher", "--in", f">frames://{address}", "--sink",
            "arroyo_testplugins.sinks:OrderSink", "--stats", sink_status, name="sink", env=env)
    assert exit_within(source, 30) == 0

    def finished():
        runs = query_status(sink_status)["outputs"][0]["runs"]
        return runs[-1] if runs and runs[-1]["stopped"] else None

    run = wait_for(finished, 30, "the run at the sink")
    # The OrderSink counts frame indices itself (no ledger code): all 300, in order.
    assert run["frames"] == 300 and run["frames_sent"] == 300 and run["out_of_order"] == []
    link = query_status(sink_status)["input"]
    assert link["link"] == f"input >frames://{address}"
    assert link["received"] == 302 and link["missing"] == 0 and link["malformed"] == {}


def test_an_unknown_scheme_names_the_registered_transports(service):
    process = service("publisher", "--in", ">nosuch://127.0.0.1:1", "--sink", "stats",
                      name="doomed", ready=False)
    assert process.process.wait(15) == 2
    assert "no transport for scheme 'nosuch'" in process.output()
    assert "tcp" in process.output() and "redis" in process.output()
