"""User operators that the integration tests run inside ``arroyo operator`` services."""

from __future__ import annotations

from typing import Any

import numpy as np

from arroyo_core.components import Operator, Results
from arroyo_core.message import Event


class Flaky(Operator):
    """Raises ``ValueError(message)`` on every Event whose ``frame`` is a multiple of
    ``every``, and stamps its keyword arguments into the others' metadata so a test can
    see how ``-o key=value`` arrived (type and value).
    """

    def __init__(self, every: int = 3, message: str = "boom", scale: float = 1.0,
                 tags: list[Any] | None = None) -> None:
        super().__init__()
        self.every = every
        self.message = message
        self.scale = scale
        self.tags = tags

    def on_event(self, event: Event) -> Results:
        frame = event.meta["frame"]
        if frame % self.every == 0:
            raise ValueError(f"{self.message} at frame {frame}")
        meta = {**event.meta, "every": self.every, "message": self.message,
                "scale": self.scale, "tags": self.tags,
                "arg_types": [type(v).__name__ for v in (self.every, self.message, self.scale)]}
        payload = {name: np.asarray(value) * self.scale for name, value in event.payload.items()}
        return Event(meta, payload)
