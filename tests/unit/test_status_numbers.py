"""`arroyo status` numbers that add up: no negative unaccounted, no "None" for a run in
progress, exit status 3 when a run that ended lost frames, one JSON document; a sink's rate
measured from the run's Start as the source stamped it."""

from __future__ import annotations

import json
import time

import numpy as np
from click.testing import CliRunner

from arroyo_core.message import Event, Start, Stop
from arroyo_core.sinks import RunTally
from arroyo_core.status import LinkStatus, RunStatus, SenderStatus, ServiceStatus
from services import cli, status_server
from services.ledger_table import hops, lost, render


def sink(run: RunStatus, src: str = "S", received: int = 10) -> ServiceStatus:
    return ServiceStatus(
        name="sink",
        input=LinkStatus(name="input pull >tcp://h:1", direction="input", pattern="pull",
                         received=received,
                         senders={src: SenderStatus(received=received, first_seq=0,
                                                    next_seq=received, missing=0,
                                                    missing_ranges=[], duplicates=0)}),
        outputs=[LinkStatus(name="stats sink", direction="output", kind="sink", runs=[run])])


def source(sent: int) -> ServiceStatus:
    return ServiceStatus(name="source", outputs=[LinkStatus(
        name="output push @tcp://*:1", direction="output", pattern="push", sent=sent,
        src="S")])


def a_run(**changes) -> RunStatus:
    fields = dict(run="r1", frames=289, bytes=0, frames_sent=None, lost=0, duplicates=0,
                  missing_ranges=[], seconds=1.0, frames_per_s=289.0, mb_per_s=0.0,
                  complete=False)
    return RunStatus(**{**fields, **changes})


def test_a_receiver_read_after_its_sender_never_makes_unaccounted_negative():
    (hop,) = hops([source(9), sink(a_run(), received=10)])
    assert hop["unaccounted"] == 0 and hop["read_apart"]
    text = render([source(9), sink(a_run(), received=10)])
    assert "unaccounted 0 (the receiver was read after the sender" in text


def test_a_run_in_progress_reads_without_none():
    text = render([sink(a_run(run=None))])
    assert "None" not in text and "289 frames so far" in text and "(no run id)" in text


def test_lost_counts_only_runs_that_ended():
    assert lost([sink(a_run(lost=5))]) == 0  # running: missing so far, not lost
    assert lost([sink(a_run(lost=5, frames_sent=300, complete=True))]) == 5


def answering(records: dict[str, ServiceStatus]):
    def query(endpoint: str, timeout: float) -> dict:
        return records[endpoint].to_dict()
    return query


def test_status_exits_3_when_a_run_lost_frames_and_prints_one_json_document(monkeypatch):
    ended = a_run(frames=290, frames_sent=300, lost=10, complete=True)
    records = {"tcp://h:1": source(302), "tcp://h:2": sink(ended)}
    monkeypatch.setattr(status_server, "query_status", answering(records))
    runner = CliRunner()
    result = runner.invoke(cli.main, ["status", "tcp://h:1", "tcp://h:2"])
    assert result.exit_code == 3, result.output
    result = runner.invoke(cli.main, ["status", "--json", "tcp://h:1", "tcp://h:2"])
    assert result.exit_code == 3
    assert [record["name"] for record in json.loads(result.output)] == ["source", "sink"]
    records["tcp://h:2"] = sink(a_run(frames=300, frames_sent=300, complete=True))
    assert runner.invoke(cli.main, ["status", "tcp://h:1", "tcp://h:2"]).exit_code == 0
    result = runner.invoke(cli.main, ["status", "--json", "tcp://h:2"])
    assert json.loads(result.output)["name"] == "sink"  # one address: its record


def test_a_sinks_rate_is_measured_from_the_start_as_the_source_stamped_it():
    tally = RunTally("r", Start({"run": "r", "started": time.time() - 10.0}))
    for frame in range(100):  # a backlog arriving all at once
        tally.count(Event({"run": "r", "frame": frame}, {"x": np.zeros(1)}))
    tally.finish(Stop({"run": "r", "frames_sent": 100}))
    status = tally.status()
    assert status.seconds >= 10.0 and status.frames_per_s <= 10.0, status
    assert status.rate_from == "start" and status.joined_at is None
