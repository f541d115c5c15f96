"""The event builder's joining logic (arroyo_core.event_builder), without sockets: parts by
key, per-run streams, incomplete events emitted or dropped and counted per stream, late
parts, the window, timeouts, and Start and Stop joined."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core.errors import ConfigError
from arroyo_core.event_builder import EventBuilder
from arroyo_core.message import Event, Message, Start, Stop

STREAMS = ("det", "spec", "enc")


def part(frame: int, value: int = 0, run: str = "r", **meta) -> Event:
    return Event({"run": run, "frame": frame, **meta}, {"x": np.array([value or frame])})


def feed(builder: EventBuilder, items: list[tuple[str, Message]], now: float = 0.0,
         ) -> list[Message]:
    out: list[Message] = []
    for stream, message in items:
        out += builder.add(stream, message, now)
    return out


def starts(run: str = "r") -> list[tuple[str, Message]]:
    return [(name, Start({"run": run})) for name in STREAMS]


def stops(sent: int, run: str = "r") -> list[tuple[str, Message]]:
    return [(name, Stop({"run": run, "frames_sent": sent})) for name in STREAMS]


def events(out: list[Message]) -> dict[int, Event]:
    return {m.meta["frame"]: m for m in out if isinstance(m, Event)}


def test_parts_join_by_frame_into_one_event_with_each_streams_arrays_and_metadata():
    builder = EventBuilder(STREAMS)
    out = feed(builder, starts())
    assert [m.kind for m in out] == ["start"]
    assert out[0].meta["run"] == "r" and set(out[0].meta["parts"]) == set(STREAMS)
    # streams interleave, and one runs ahead of the others
    out = feed(builder, [("det", part(0, 10)), ("det", part(1, 11)), ("spec", part(0, 20)),
                         ("enc", part(0, 30)), ("enc", part(1, 31)), ("spec", part(1, 21))])
    built = events(out)
    assert sorted(built) == [0, 1]
    event = built[1]
    assert {k: int(v[0]) for k, v in event.payload.items()} == {
        "det/x": 11, "spec/x": 21, "enc/x": 31}
    assert event.meta["parts"]["spec"] == {"run": "r", "frame": 1}
    assert "missing" not in event.meta
    (stop,) = feed(builder, stops(2))
    assert stop.meta["frames_sent"] == 2 and stop.meta["complete"] == 2
    assert stop.meta["incomplete"] == {} and "dropped" not in stop.meta


def test_a_stream_that_skips_a_frame_makes_exactly_that_event_incomplete_at_once():
    builder = EventBuilder(STREAMS)
    feed(builder, starts())
    items = []
    for frame in range(6):
        items += [("det", part(frame)), ("enc", part(frame))]
        if frame != 3:
            items.append(("spec", part(frame)))
    built = events(feed(builder, items))
    # frame 3 was given up when spec's frame 4 came, not at a timeout
    assert sorted(built) == list(range(6))
    assert built[3].meta["missing"] == ["spec"] and set(built[3].payload) == {"det/x", "enc/x"}
    assert all("missing" not in built[f].meta for f in (0, 1, 2, 4, 5))
    (stop,) = feed(builder, stops(6))
    assert stop.meta["incomplete"] == {"spec": 1} and stop.meta["complete"] == 5
    assert builder.status()["streams"]["spec"]["incomplete"] == 1


def test_an_event_is_given_up_once_the_last_part_it_can_get_came():
    builder = EventBuilder(STREAMS)
    feed(builder, starts())
    # spec skips 0 and passes it while enc (late) has not sent it yet: 0 waits for enc
    out = feed(builder, [("det", part(0)), ("spec", part(1)), ("det", part(1))])
    assert events(out) == {}
    out = feed(builder, [("enc", part(0))])  # now nothing more can come for 0
    assert events(out)[0].meta["missing"] == ["spec"]


def test_dropped_incomplete_events_are_said_in_the_stop_and_a_late_part_is_counted():
    builder = EventBuilder(STREAMS, incomplete="drop")
    feed(builder, starts())
    out = feed(builder, [("det", part(0)), ("enc", part(0)), ("det", part(1)),
                         ("enc", part(1)), ("spec", part(1))])
    assert sorted(events(out)) == [1]  # 0 dropped: spec passed it over
    out = feed(builder, [("spec", part(0))])  # spec's frame 0 after all: too late
    assert out == []
    (stop,) = feed(builder, stops(2))
    assert stop.meta["dropped"] == 1 and stop.meta["incomplete"] == {"spec": 1}
    assert stop.meta["late"] == {"spec": 1}


def test_an_event_waits_for_a_stream_that_starts_late_until_its_timeout():
    builder = EventBuilder(STREAMS, timeout=1.0)
    out = feed(builder, starts()[:2], now=0.0)
    assert out == []  # the Start waits for enc's
    out = feed(builder, [("det", part(0)), ("spec", part(0))], now=0.1)
    assert out == [] and builder.expire(0.5) == []
    out = feed(builder, [starts()[2], ("enc", part(0))], now=0.6)
    assert [m.kind for m in out] == ["start", "event"]
    assert "missing" not in out[1].meta
    # and one that never comes: given up once the event has waited `timeout`
    feed(builder, [("det", part(1)), ("spec", part(1))], now=1.0)
    assert builder.expire(1.9) == []
    (late,) = builder.expire(2.0)
    assert late.meta["frame"] == 1 and late.meta["missing"] == ["enc"]


def test_a_stream_that_goes_on_sending_behind_the_others_is_waited_for_past_the_timeout():
    builder = EventBuilder(("det", "enc"), timeout=1.0)
    feed(builder, [("det", Start({"run": "r"})), ("enc", Start({"run": "r"}))])
    for frame in range(5):  # det sends all at once; enc a part every 0.8 s, from 0.5 s
        feed(builder, [("det", part(frame))], now=0.1 * frame)
    built = []
    for frame in range(5):  # enc's part 4 comes 3.3 s after det's
        now = 0.5 + 0.8 * frame
        built += builder.expire(now)  # enc was heard less than 1 s ago: nothing given up
        built += feed(builder, [("enc", part(frame))], now=now)
    assert [m.meta["frame"] for m in built] == list(range(5))
    assert all("missing" not in m.meta for m in built)


def test_the_start_goes_on_without_a_stream_that_never_starts_after_the_timeout():
    builder = EventBuilder(STREAMS, timeout=1.0)
    feed(builder, starts()[:2], now=0.0)
    (start,) = builder.expire(1.0)
    assert start.kind == "start" and set(start.meta["parts"]) == {"det", "spec"}


def test_the_window_bounds_what_is_held_in_events_and_bytes():
    builder = EventBuilder(STREAMS, window=3, in_order=False)
    feed(builder, starts())
    out = feed(builder, [("det", part(frame)) for frame in range(5)])
    assert sorted(events(out)) == [0, 1]  # the oldest go first, incomplete
    assert builder.status()["held"] == 3 and builder.given_up["window"] == 2
    builder = EventBuilder(STREAMS, window_bytes=20, in_order=False)
    feed(builder, starts())
    out = feed(builder, [("det", part(frame)) for frame in range(4)])  # 8 bytes each
    assert sorted(events(out)) == [0, 1] and builder.status()["held_bytes"] == 16


def test_a_per_run_stream_is_not_waited_for_and_goes_into_every_later_event():
    builder = EventBuilder(("det", "scan"), per_run=["scan"])
    feed(builder, [("det", Start({"run": "r"})), ("scan", Start({"run": "r"}))])
    out = feed(builder, [("det", part(0))])
    assert set(events(out)[0].payload) == {"det/x"} and "missing" not in out[0].meta
    feed(builder, [("scan", Event({"run": "r", "sample": "Si"}, {"temp": np.array([300])}))])
    out = feed(builder, [("det", part(1))])
    assert events(out)[1].meta["parts"]["scan"]["sample"] == "Si"
    assert int(events(out)[1].payload["scan/temp"][0]) == 300
    out = feed(builder, [("det", Stop({"run": "r", "frames_sent": 2})),
                         ("scan", Stop({"run": "r"}))])
    assert out[-1].meta["complete"] == 2 and out[-1].meta["frames_sent"] == 2


def test_a_metadata_key_joins_and_events_are_numbered_in_the_order_built():
    builder = EventBuilder(("a", "b"), key="trigger")
    feed(builder, [("a", Start({"run": "r"})), ("b", Start({"run": "r"}))])
    out = feed(builder, [("a", part(5, trigger="t1")), ("b", part(9, trigger="t1")),
                         ("b", part(10, trigger="t2")), ("a", part(6, trigger="t2"))])
    assert [(m.meta["frame"], m.meta["trigger"]) for m in out] == [(0, "t1"), (1, "t2")]
    # a part without a usable key (none, or a list as msgpack gives it) is counted, dropped
    assert feed(builder, [("a", part(7)), ("b", part(8, trigger=[1, 2]))]) == []
    assert {n: s["no_key"] for n, s in builder.status()["streams"].items()} == {"a": 1, "b": 1}
    out = feed(builder, [("a", Stop({"run": "r"})), ("b", Stop({"run": "r"}))])
    assert out[-1].meta["frames_sent"] == 2


def test_the_stop_waits_for_every_stream_or_stop_timeout_without_parts():
    builder = EventBuilder(STREAMS, stop_timeout=5.0)
    feed(builder, starts(), now=0.0)
    feed(builder, [("det", part(0)), ("spec", part(0))], now=0.0)
    assert feed(builder, stops(1)[:2], now=1.0) == []  # enc has not stopped: it may send
    (event,) = builder.expire(2.0)  # frame 0 waited its timeout for enc
    assert event.meta["missing"] == ["enc"]
    assert builder.expire(5.9) == []  # 5 s without any part since the first Stop: at 6
    (stop,) = builder.expire(6.0)
    assert stop.kind == "stop" and set(stop.meta["parts"]) == {"det", "spec"}
    # the next run starts afresh
    out = feed(builder, starts("r2"))
    assert out[0].meta["run"] == "r2"


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="incomplete"):
        EventBuilder(STREAMS, incomplete="keep")
    with pytest.raises(ConfigError, match="per_run"):
        EventBuilder(STREAMS, per_run=["nope"])
    with pytest.raises(ConfigError, match="every stream is per_run"):
        EventBuilder(["a"], per_run=["a"])
