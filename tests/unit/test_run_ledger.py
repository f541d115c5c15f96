"""The run ledger: per run, which frame numbers a link saw, however many sender ids the
run came under; bounded in runs and in ranges; read back as typed records."""

from __future__ import annotations

from arroyo_core.message import Event, Start, Stop
from arroyo_core.run_ledger import MAX_RUNS, RUN_RANGES, SHOWN_RANGES, RunLedger
from arroyo_core.status import LinkStatus, RunLedgerStatus


def event(run, frame):
    return Event({"run": run, "frame": frame}, {})


def feed(ledger: RunLedger, run, frames, src="A", start=True, stop: int | None = None):
    if start:
        ledger.observe(Start({"run": run}), src)
    for frame in frames:
        ledger.observe(event(run, frame), src)
    if stop is not None:
        ledger.observe(Stop({"run": run, "frames_sent": stop}), src)


def only(ledger: RunLedger) -> RunLedgerStatus:
    (record,) = ledger.status()
    return record


def test_a_run_through_restarted_senders_shows_what_went_missing_between_them():
    """A stage killed twice: its three instances send under three sender ids, each gap-free
    in its own sequence; the frames lost inside the killed ones show here, by number."""
    ledger = RunLedger("input pull >tcp://h:1")
    feed(ledger, "r", range(0, 100), src="A", stop=None)
    feed(ledger, "r", range(130, 200), src="B", start=False)
    feed(ledger, "r", range(205, 290), src="C", start=False, stop=300)
    record = only(ledger)
    assert (record.seen, record.expected, record.senders) == (255, 300, 3)
    assert record.missing == 45 and record.lost == 45  # 30 + 5 + the last 10, after frame 289
    assert record.missing_ranges == [[100, 129], [200, 204], [290, 299]]
    assert record.started and record.complete and record.duplicates == 0


def test_a_link_that_joined_mid_run_counts_from_its_first_frame():
    """A restarted stage never sees the Start: what came before its first frame went to
    its killed predecessor, and is not its loss."""
    ledger = RunLedger("x")
    feed(ledger, "r", range(500, 520), start=False, stop=520)
    record = only(ledger)
    assert (record.first, record.seen, record.missing, record.started) == (500, 20, 0, False)
    assert record.lost is None  # not known here: the frames before 500 went elsewhere


def test_frames_out_of_order_fill_their_gaps_and_a_repeat_is_a_duplicate():
    ledger = RunLedger("x")
    feed(ledger, "r", [0, 2, 4, 1, 3, 3], stop=5)
    record = only(ledger)
    assert (record.seen, record.missing, record.late, record.duplicates) == (5, 0, 2, 1)


def test_runs_are_kept_apart_and_bounded():
    ledger = RunLedger("x", max_runs=3)
    for number in range(5):
        feed(ledger, f"run{number}", range(10), stop=10)
    assert [record.run for record in ledger.status()] == ["run2", "run3", "run4"]
    assert ledger.forgotten == 2
    open_run = RunLedger("x", max_runs=2)
    feed(open_run, "a", range(3))  # never finished
    feed(open_run, "b", range(3), stop=3)
    feed(open_run, "c", range(3))
    assert [record.run for record in open_run.status()] == ["a", "c"]  # finished ones go first
    assert MAX_RUNS >= 8


def test_ranges_are_bounded_per_run_and_the_count_stays_exact():
    ledger = RunLedger("x")
    frames = range(0, 4 * RUN_RANGES, 2)  # every other frame: a gap each
    feed(ledger, "r", frames, stop=4 * RUN_RANGES)
    record = only(ledger)
    assert record.missing == 2 * RUN_RANGES
    assert len(record.missing_ranges) == SHOWN_RANGES


def test_events_without_a_frame_number_are_not_counted_and_other_run_ids_work():
    ledger = RunLedger("x")
    ledger.observe(Start({"run": ["a", 1]}))  # an unhashable run id
    ledger.observe(Event({"run": ["a", 1], "frame": 0}, {}))
    ledger.observe(Event({"run": ["a", 1], "frame": True}, {}))  # a bool is not a frame number
    ledger.observe(Event({"run": ["a", 1]}, {}))
    ledger.observe(Stop({"run": ["a", 1], "frames_sent": 1}))
    record = only(ledger)
    assert record.run == ["a", 1] and (record.seen, record.missing) == (1, 0)
    no_run = RunLedger("x")
    feed(no_run, None, range(3), stop=3)
    assert only(no_run).run is None and only(no_run).seen == 3


def test_a_start_after_some_frames_counts_from_frame_0_after_all():
    ledger = RunLedger("x")
    feed(ledger, "r", range(5, 8), start=False)
    ledger.observe(Start({"run": "r"}))
    record = only(ledger)
    assert record.started and record.missing == 5 and record.missing_ranges == [[0, 4]]


def test_an_output_counts_what_it_dropped_by_run():
    ledger = RunLedger("output pub @tcp://*:1")
    ledger.observe(Start({"run": "r"}))
    for frame in range(10):
        if frame in (3, 4):
            ledger.drop(event("r", frame))
        else:
            ledger.observe(event("r", frame))
    ledger.observe(Stop({"run": "r", "frames_sent": 10}))
    record = only(ledger)
    assert (record.seen, record.dropped, record.missing) == (8, 2, 2)


def test_records_round_trip_in_a_links_dict_form():
    ledger = RunLedger("x")
    feed(ledger, "r", [0, 1, 5], src="A", stop=8)
    link = LinkStatus(name="input pull >tcp://h:1", direction="input", received=5,
                      run_ledger=ledger.status())
    back = LinkStatus.from_dict(link.to_dict())
    assert back == link and back.run_ledger is not None
    assert back.run_ledger[0].missing_ranges == [[2, 4], [6, 7]]


def test_a_pool_of_senders_interleaving_counts_each_sender_once():
    ledger = RunLedger("x")
    ledger.observe(Start({"run": "r"}), "A")
    for frame in range(30):
        ledger.observe(event("r", frame), "ABC"[frame % 3])
    assert only(ledger).senders == 3
