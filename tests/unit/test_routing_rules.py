"""Routing rules of a pool's dispatch (arroyo_core.routing) against the in-memory twin of a
transport that addresses peers: broadcast, discard (counted, said in the Stop), affinity
by a metadata key (and again after its worker is gone), and bad rules."""

from __future__ import annotations

from typing import Any

import pytest

from arroyo_core import dispatch
from arroyo_core.dispatch import DispatchLink
from arroyo_core.errors import ConfigError
from arroyo_core.message import Event, Start, Stop
from arroyo_core.routing import decide, parse_rules
from tests.unit.test_pools import TwinPeers


@pytest.fixture
def twin(monkeypatch) -> TwinPeers:
    peers = TwinPeers()

    class Twin:
        def sender(self, address: Any, options: Any, link: str) -> TwinPeers:
            return peers

        def name(self, address: Any, options: Any) -> str:
            return "twin"

    monkeypatch.setattr("arroyo_core.link.transport_for", lambda address: Twin())
    monkeypatch.setattr(dispatch, "CREDIT_WAIT_S", 0.0)
    return peers


def ev(frame: int, **meta: Any) -> Event:
    return Event({"run": "r", "frame": frame, **meta})


def frames_at(twin: TwinPeers, peer: bytes) -> list[int]:
    return [m.meta["frame"] for m in twin.sent.get(peer, []) if m.kind == "event"]


RULES = [{"when": {"kind": "calibration"}, "to": "all"},
         {"when": {"quality": ["bad", "empty"]}, "to": "none"},
         {"to": "affinity", "key": "parts.encoder.position"}]


def test_broadcast_discard_and_affinity_by_rule(twin):
    link = DispatchLink("@twin://pool", route=RULES)
    twin.heard = [(b"a", True, 50), (b"b", True, 50)]
    link.publish(Start({"run": "r"}))
    link.publish(ev(0, kind="calibration"))  # to both
    link.publish(ev(1, quality="bad"))  # to none
    for frame in range(2, 14):  # three positions: each stays with one worker
        link.publish(ev(frame, parts={"encoder": {"position": frame % 3}}))
    link.publish(ev(14))  # no position: by credit
    link.publish(Stop({"run": "r", "frames_sent": 15}))
    a, b = frames_at(twin, b"a"), frames_at(twin, b"b")
    assert 0 in a and 0 in b and 1 not in a + b
    positions = [{f % 3 for f in got if 2 <= f < 14} for got in (a, b)]
    assert not positions[0] & positions[1] and positions[0] | positions[1] == {0, 1, 2}
    assert sorted(a + b) == [0, 0, *range(2, 15)]
    # the discarded frame is dropped by policy, said in every worker's Stop
    stops = [got[-1] for got in twin.sent.values()]
    assert all(s.kind == "stop" and s.meta["dropped"] == 1 for s in stops)
    assert link.status().transport["pool"]["routed"] == {"all": 1, "none": 1, "affinity": 12}
    assert link.status().dropped == {"discarded by a routing rule": 1}


def test_an_affine_worker_that_is_gone_hands_its_values_to_another(twin):
    link = DispatchLink("@twin://pool", route=[{"to": "affinity", "key": "sample"}])
    twin.heard = [(b"a", True, 50), (b"b", True, 50)]
    link.publish(Start({"run": "r"}))
    link.publish(ev(0, sample="x"))
    first = b"a" if frames_at(twin, b"a") else b"b"
    other = b"b" if first == b"a" else b"a"
    link.publish(ev(1, sample="x"))
    assert frames_at(twin, first) == [0, 1]
    twin.gone.add(first)
    link.publish(ev(2, sample="x"))
    assert frames_at(twin, other) == [2]
    link.publish(ev(3, sample="x"))
    assert frames_at(twin, other) == [2, 3]


def test_rules_decide_in_order_and_bad_rules_are_config_errors():
    rules = parse_rules(RULES)
    assert decide(rules, {"kind": "calibration", "quality": "bad"}) == ("all", None)
    assert decide(rules, {"quality": "empty"}) == ("none", None)
    assert decide(rules, {"parts": {"encoder": {"position": 2.5}}}) == ("affinity", "2.5")
    assert decide(rules, {"frame": 3}) == ("credit", None)
    with pytest.raises(ConfigError, match="rule 1: 'to' must be one of"):
        parse_rules([{"to": "everyone"}])
    with pytest.raises(ConfigError, match="'key'"):
        parse_rules([{"to": "affinity"}])
    with pytest.raises(ConfigError, match="rule 2"):
        parse_rules([{"to": "all"}, {"to": "none", "wehn": {}}])
