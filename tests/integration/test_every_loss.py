"""Every loss counted, under supervisord, with the middle stage killed five times.

source -> middle (passthrough) -> forwarder (`--sink zmq`) -> an independent receiver
(raw pyzmq and msgpack: tests.support.kills.RawReceiver). The middle is killed with SIGKILL five
times: three of them as soon as frames flow again through its new instance (about half a
second after its start), and every kill after the first within supervisor's startsecs of
the previous start. For PUSH and for PUB between the middle and the forwarder:

- the loss `arroyo status` reports for the run (the forwarder's output: what left the
  chain) equals the true loss: frames the source sent minus distinct frames received;
- no stage ends FATAL (nor passes through it): each is started again at once;
- frames flow again at the receiver soon after each kill (measured; asserted with a wide
  margin here, the figures are benchmarks/kill_resume.py's).
"""

from __future__ import annotations

import pytest

from tests.support.kills import describe, run_kills

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 10_000  # at 500 frames/s: 20 s, longer than the kills take
RESUME_MARGIN_S = 3.0  # the figure is 0.6-1.1 s on 2 busy cores; this only catches a stall


@pytest.mark.parametrize("pattern", ["push", "pub"])
def test_killed_five_times_the_loss_reported_is_the_true_loss(tmp_path, pattern):
    outcome = run_kills(tmp_path, pattern, frames=FRAMES)
    print("\n" + describe(outcome) + "\n" + outcome.table)

    assert len(outcome.kills) == 5, outcome.log
    assert all(kill.respawned is not None and kill.resumed is not None
               for kill in outcome.kills), describe(outcome)
    (run, sent), = outcome.frames_sent.items()
    assert sent == FRAMES, "the run ended before every kill"
    assert outcome.duplicates == 0

    # What arroyo status says the chain lost in this run is what it lost.
    record = outcome.reported[run]
    assert record["started"] and record["complete"] and record["expected"] == FRAMES
    assert record["missing"] == outcome.true_loss, describe(outcome)
    assert record["seen"] == FRAMES - outcome.true_loss
    end_to_end = [line for line in outcome.table.splitlines() if "end to end" in line]
    assert len(end_to_end) == 1 and f"lost {outcome.true_loss}" in end_to_end[0], outcome.table
    assert sum(kill.lost for kill in outcome.kills) == outcome.true_loss

    # Never FATAL, every restart at once: the quick kills came within startsecs (3 s) of
    # their start, where supervisor alone would back off and, the fourth time, give up.
    assert "FATAL" not in outcome.states.values() and outcome.states["middle"] == "RUNNING"
    quick = [kill for kill in outcome.kills[1:] if kill.since_start < 3.0]
    assert len(quick) >= 3, describe(outcome)
    assert outcome.restarts.get("kills:middle", 0) >= len(quick)
    assert max(kill.resumed or 99 for kill in outcome.kills) < RESUME_MARGIN_S, \
        describe(outcome)
