"""How far a receiving link is behind its sender, and what to do when it is too far.

Every message's header carries the time its sender encoded it, so a receiver knows its
lag (receive time minus send time) without asking anyone. On PUB/SUB with back-pressure a
slow subscriber holds the publisher back; without it, the publisher's queue for that
subscriber grows. Either way the subscriber is the one that can tell. Lag measured this
way includes any clock offset between the two hosts: keep their clocks synchronised
(NTP/PTP) before setting a ``max_lag`` of less than a second across machines.
"""

from __future__ import annotations

import logging
import time

from .errors import ConfigError, FallenBehindError
from .status import LagStatus

log = logging.getLogger(__name__)

ON_LAG = ("warn", "disconnect")
REPORT_EVERY_S = 5.0


class LagWatch:
    """Reports (and with ``on_lag='disconnect'`` ends) a link whose lag exceeds ``max_lag``.

    :meth:`observe` runs once per received message, so it is two float operations until
    the limit is crossed.
    """

    def __init__(self, link: str, max_lag: float, on_lag: str = "warn") -> None:
        if on_lag not in ON_LAG:
            raise ConfigError(f"on_lag {on_lag!r} is not one of {', '.join(ON_LAG)}")
        if max_lag <= 0:
            raise ConfigError(f"max_lag must be positive seconds, not {max_lag!r}")
        self.link = link
        self.max_lag = float(max_lag)
        self.on_lag = on_lag
        self.lag = 0.0  # of the last message received
        self.worst = 0.0
        self.late = 0  # messages that arrived later than max_lag
        self._reported = 0.0

    def observe(self, sent_time: float) -> None:
        lag = self.lag = time.time() - sent_time
        if lag > self.max_lag:
            self._behind(lag)

    def _behind(self, lag: float) -> None:
        self.late += 1
        self.worst = max(self.worst, lag)
        if self.on_lag == "disconnect":
            log.error("%s: %.2f s behind its sender (max_lag %.2f s); disconnecting rather than "
                      "holding the sender back (on_lag=disconnect)", self.link, lag, self.max_lag)
            raise FallenBehindError(f"{self.link}: {lag:.2f} s behind its sender, more than "
                                    f"max_lag={self.max_lag} s")
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY_S:
            self._reported = now
            log.warning("%s: falling behind its sender: %.2f s late (max_lag %.2f s); %d late "
                        "message(s) so far", self.link, lag, self.max_lag, self.late)

    def status(self) -> LagStatus:
        return LagStatus(lag=round(self.lag, 6), max_lag=self.max_lag, late=self.late,
                         worst_lag=round(self.worst, 6))
