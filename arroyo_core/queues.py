"""A bounded message queue with an overflow policy, measured in messages and bytes.

The bound is what keeps memory flat when a stage falls behind: 1000 queued 16 MiB
frames would be 16 GiB, so the queue counts payload bytes as well as messages.
Start and Stop are never dropped by a policy: losing them would corrupt a run.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .errors import ConfigError
from .ledger import OutputLedger
from .message import Event, Message
from .run_ledger import MAX_RUNS, run_key
from .status import QueueStatus

POLICIES = ("block", "drop-newest", "drop-oldest", "keep-latest")
BATCH_BYTES = 2**20  # payload bytes get_many hands out at once (beyond the bounds)


class MessageQueue:
    """Thread-safe FIFO between a receiving thread and a processing thread.

    ``policy`` decides what ``put`` does when the queue is full: ``block`` waits (back-
    pressure) until the queue has drained to half its bounds, ``drop-newest`` discards
    the new event, ``drop-oldest`` discards the oldest queued event, ``keep-latest`` keeps
    only the newest event. Drops are counted in ``ledger``.
    """

    def __init__(self, max_items: int = 64, max_bytes: int = 2**30, policy: str = "block",
                 name: str = "queue") -> None:
        if policy not in POLICIES:
            raise ConfigError(f"queue policy {policy!r} is not one of {', '.join(POLICIES)}")
        if max_items < 1 or max_bytes < 1:
            raise ConfigError("queue bounds must be positive")
        self.max_items = 1 if policy == "keep-latest" else max_items
        self.max_bytes = max_bytes
        self.policy = policy
        self.ledger = OutputLedger(name)
        # Events dropped by the policy, per run: the runtime adds them to the run's Stop
        # (see Runtime), so the next hop counts them as dropped, not lost.
        self.dropped_runs: dict[Any, int] = {}
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def _full(self, incoming: int) -> bool:
        # One message larger than the byte budget still passes alone, or it never would.
        return bool(self._items) and (len(self._items) >= self.max_items
                                      or self._bytes + incoming > self.max_bytes)

    def _drained(self) -> bool:
        # A put blocked on a full queue is woken once the queue has drained to half its
        # bounds, not for every slot freed: when processing is the slower side, waking the
        # receiving thread for each message costs a thread switch (tens of microseconds on
        # a busy VM) per message.
        return len(self._items) <= self.max_items // 2 and self._bytes <= self.max_bytes // 2

    def _drop_oldest_event(self) -> bool:
        for index, (item, size) in enumerate(self._items):
            if isinstance(item, Event):
                del self._items[index]
                self._bytes -= size
                self.ledger.drop(f"{self.policy}: queue full")
                self._count_drop(item)
                return True
        return False

    def _count_drop(self, event: Event) -> None:
        runs = self.dropped_runs
        key = run_key(event.meta.get("run"))
        if key not in runs and len(runs) >= MAX_RUNS:
            del runs[next(iter(runs))]  # a run whose Stop never came: the oldest goes
        runs[key] = runs.get(key, 0) + 1

    def take_dropped(self, run: Any) -> int:
        """Events of ``run`` dropped by the policy so far, forgotten once taken (at the
        run's Stop)."""
        with self._cond:
            return self.dropped_runs.pop(run_key(run), 0)

    def put(self, item: Any) -> None:
        with self._cond:
            self._put(item)
            self._cond.notify_all()

    def put_many(self, items: list[Any]) -> None:
        """:meth:`put` each of ``items`` in turn, waking the consumer once for them all: a
        batch of small events costs one hand-off between threads, not one per event."""
        with self._cond:
            for item in items:
                self._put(item)
            self._cond.notify_all()

    def _put(self, item: Any) -> None:
        """Queue ``item`` (or drop it, by the policy); the caller holds the lock and wakes
        the consumer afterwards."""
        size = item.nbytes if isinstance(item, Message) else 0
        droppable = isinstance(item, Event)
        while self._full(size) and droppable:
            if self.policy == "block":
                self._cond.notify_all()  # what put_many queued so far is there to take
                self._cond.wait()
            elif self.policy == "drop-newest" or not self._drop_oldest_event():
                self.ledger.drop(f"{self.policy}: queue full")
                self._count_drop(item)
                return
        self._items.append((item, size))
        self._bytes += size
        self.ledger.sent += 1

    def get(self, timeout: float | None = None) -> Any:
        """Return the oldest item; raise TimeoutError if none came within ``timeout``."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                raise TimeoutError
            item, size = self._items.popleft()
            self._bytes -= size
            if self._drained():
                self._cond.notify_all()
            return item

    def get_many(self, max_bytes: int = BATCH_BYTES, timeout: float | None = None) -> list[Any]:
        """Return the oldest items, at least one: all that are queued, up to ``max_bytes``
        of payload (the first comes whatever its size); raise TimeoutError as :meth:`get`.

        A consumer that takes a batch per wake-up instead of an item per wake-up is what
        keeps small messages fast: waking a thread costs more than handling a 1 KiB event.
        Like an item from :meth:`get`, a batch no longer counts against the queue's bounds
        while it is processed, so ``max_bytes`` stays small (at most that, or one message,
        is in flight beyond the bounds).
        """
        with self._cond:
            items = self._items
            if not items and not self._cond.wait_for(lambda: items, timeout):
                raise TimeoutError
            item, taken = items.popleft()
            batch = [item]
            while items and taken + items[0][1] <= max_bytes:
                item, size = items.popleft()
                batch.append(item)
                taken += size
            self._bytes -= taken
            if self._drained():
                self._cond.notify_all()
            return batch

    def __len__(self) -> int:
        return len(self._items)

    def status(self) -> QueueStatus:
        return QueueStatus(name=self.ledger.link, policy=self.policy, max_items=self.max_items,
                           max_bytes=self.max_bytes, depth=len(self._items), bytes=self._bytes,
                           sent=self.ledger.sent, dropped=dict(self.ledger.dropped))

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
