"""WaitLog: a wait is logged after 5 s, 10 s later, 30 s later, then every 60 s."""

from arroyo_core import transport
from arroyo_core.transport import WaitLog


def test_a_wait_is_logged_often_at_first_then_every_minute(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(transport.time, "monotonic", lambda: now[0])
    waiting = WaitLog()
    logged = []
    assert not waiting.due()  # the first call starts the clock
    for _ in range(2000):  # 200 s, a tenth of a second at a time
        now[0] += 0.1
        if waiting.due():
            logged.append(round(waiting.waited))
    assert logged == [5, 15, 45, 105, 165]
    waiting.reset()
    assert not waiting.due() and waiting.waited == 0.0
