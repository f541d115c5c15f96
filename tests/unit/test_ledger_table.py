"""`arroyo status` shows a chain's ledgers as one table: links, hops matched by sender id,
and the end-to-end runs; a restarted stage shows where it joined."""

from arroyo_core.status import (
    LinkStatus,
    QueueStatus,
    RunLedgerStatus,
    RunStatus,
    SenderStatus,
    ServiceStatus,
)
from services.ledger_table import hops, render, terminal_outputs


def sender(received, first_seq, missing=0, ranges=()):
    return SenderStatus(received=received, first_seq=first_seq,
                        next_seq=first_seq + received + missing, missing=missing,
                        missing_ranges=[list(r) for r in ranges], duplicates=0)


def chain():
    source = ServiceStatus(
        name="source",
        input=LinkStatus(name="simulated detector", direction="input", kind="source", sent=100),
        queue=QueueStatus(name="input queue", policy="block", max_items=64, max_bytes=2**30,
                          depth=0, bytes=0, sent=102),
        outputs=[LinkStatus(name="output push @tcp://*:1", direction="output", pattern="push",
                            sent=102, src="S",
                            transport={"peers": {"peers": 1, "disconnects": 2}})])
    middle = ServiceStatus(
        name="middle",
        input=LinkStatus(name="input pull >tcp://h:1", direction="input", pattern="pull",
                         received=60, malformed={"msgpack": 2, "dtype": 1},
                         senders={"S": sender(60, 40)},
                         transport={"peers": {"peers": 1, "disconnects": 0}}),
        outputs=[LinkStatus(name="output pub @tcp://*:2", direction="output", pattern="pub",
                            sent=60, dropped={"no subscriber": 3}, src="M")])
    sink = ServiceStatus(
        name="sink",
        input=LinkStatus(name="input sub >tcp://h:2", direction="input", pattern="sub",
                         received=55, missing=5, senders={"M": sender(55, 0, 5, [[10, 14]])}),
        outputs=[LinkStatus(name="verifying sink", direction="output", kind="sink", runs=[
            RunStatus(run="r1", frames=90, bytes=0, frames_sent=100, lost=10, duplicates=0,
                      missing_ranges=[[10, 14], [50, 54]], seconds=1.0, frames_per_s=90.0,
                      mb_per_s=0.0, complete=True, corrupt=0, crc_checked=90)])])
    return [source, middle, sink]


def test_hops_match_outputs_to_inputs_by_sender():
    found = {hop["from"]: hop for hop in hops(chain())}
    assert found["source"]["to"] == ["middle"]
    assert found["source"]["before"] == 40  # what a killed predecessor of middle took
    assert found["source"]["unaccounted"] == 102 - 40 - 60
    assert found["middle"]["unaccounted"] == 60 - 0 - 55  # pub: each subscriber gets all


def test_render_shows_every_link_hop_and_run():
    text = render(chain(), errors=["tcp://h:9: no status answer"])
    assert "3 (dtype 1, msgpack 2)" in text
    assert "joined S at seq 40" in text and "M missing [10-14]" in text
    assert "no subscriber 3" in text
    assert "source -> middle: sent 102, received 60, 40 before its first message" in text
    assert "lost 10 [10-14, 50-54]" in text and "(complete)" in text
    assert "unreachable: tcp://h:9" in text


def test_the_table_reads_the_records_dict_form_back_the_same():
    """What `arroyo status` does: the status server's dicts, read back as records."""
    replies = [ServiceStatus.from_dict(service.to_dict()) for service in chain()]
    assert replies == chain()
    assert render(replies) == render(chain())


def test_an_unanswerable_service_is_a_row_of_its_own():
    text = render([ServiceStatus.from_dict({"name": "broken", "error": "KeyError('x')"})])
    assert "broken" in text and "KeyError('x')" in text


def ledger(run="r1", seen=0, first=0, nxt=0, expected=None, missing=0, ranges=(),
           senders=1, started=True, dropped=0):
    return RunLedgerStatus(run=run, seen=seen, first=first, next=nxt, expected=expected,
                           missing=missing, missing_ranges=[list(r) for r in ranges],
                           duplicates=0, late=0, dropped=dropped, senders=senders,
                           started=started, complete=expected is not None)


def forwarding_chain():
    """source -> middle (restarted: joined the run midway) -> forwarder (`--sink zmq`,
    whose output no listed service receives: the chain's end)."""
    middle = ServiceStatus(
        name="middle",
        input=LinkStatus(name="input pull >tcp://h:1", direction="input", pattern="pull",
                         address=">tcp://h:1", received=60, senders={"S": sender(60, 40)},
                         run_ledger=[ledger(seen=58, first=42, nxt=100, expected=100,
                                            started=False)]),
        outputs=[LinkStatus(name="output push @tcp://*:2", direction="output",
                            pattern="push", address="@tcp://*:2", sent=60, src="M2",
                            run_ledger=[ledger(seen=58, first=42, nxt=100, expected=100,
                                               started=False)])])
    forwarder = ServiceStatus(
        name="forwarder",
        input=LinkStatus(name="input pull >tcp://h:2", direction="input", pattern="pull",
                         address=">tcp://h:2", received=92,
                         senders={"M1": sender(30, 0), "M2": sender(60, 0)},
                         run_ledger=[ledger(seen=90, nxt=100, expected=100, missing=10,
                                            ranges=[[30, 39]], senders=2)]),
        outputs=[LinkStatus(name="output push @tcp://*:3", direction="output",
                            pattern="push", address="@tcp://*:3", sent=92, src="F",
                            run_ledger=[ledger(seen=90, nxt=100, expected=100, missing=10,
                                               ranges=[[30, 39]])])])
    return [middle, forwarder]


def test_runs_show_each_link_and_the_end_to_end_line_of_a_forwarding_sink():
    services = forwarding_chain()
    assert [(name, output.name) for name, output in terminal_outputs(services)] == \
        [("forwarder", "output push @tcp://*:3")]
    text = render(services)
    assert "run r1 (complete: 100 frames sent)" in text
    assert "seen 58 from frame 42 on (joined mid-run), missing 0" in text
    assert "seen 90 of 100, missing 10 [30-39], from 2 sender ids" in text
    assert ("end to end, as forwarder sent it on (@tcp://*:3): 90 of 100 frames, lost 10 "
            "[30-39]") in text
    assert "forwarder -> outside the services listed: sent 92" in text
    assert "unaccounted 92" not in text
    replies = [ServiceStatus.from_dict(service.to_dict()) for service in services]
    assert render(replies) == text
