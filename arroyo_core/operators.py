"""Built-in operators. Start and Stop pass through unchanged; Events are transformed.

Each works on every array of an Event's payload (raw bytes entries pass through), so one
operator serves a single-image detector and a multi-module one alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from .components import Operator, Results
from .errors import ConfigError
from .message import Event, Payload


class PassThrough(Operator):
    """Forwards every message unchanged (and uncopied)."""


def _arrays(event: Event) -> dict[str, np.ndarray]:
    return {name: value for name, value in event.payload.items() if isinstance(value, np.ndarray)}


class Reduce(Operator):
    """Reduces each array (or a region of interest of it) to a few numbers.

    Parameters
    ----------
    roi
        ``[y0, y1, x0, x1]``: the slice of the last two axes to reduce; all if omitted.
    stats
        Which of ``sum``, ``mean``, ``min``, ``max``, ``std`` to compute.

    Each Event becomes an Event with the same metadata and payload ``{name}_{stat}`` 0-d
    arrays.
    """

    REDUCERS: ClassVar[dict[str, Callable[..., Any]]] = {
        "sum": np.sum, "mean": np.mean, "min": np.min, "max": np.max, "std": np.std}

    def __init__(self, roi: Sequence[int] | None = None,
                 stats: Sequence[str] = ("sum", "mean", "max")) -> None:
        super().__init__()
        unknown = set(stats) - set(self.REDUCERS)
        if unknown:
            raise ConfigError(f"option stats: unknown {sorted(unknown)}; choose from "
                              f"{sorted(self.REDUCERS)}")
        if roi is not None and len(roi) != 4:
            raise ConfigError(f"option roi: expected [y0, y1, x0, x1], got {roi!r}")
        self.region = (Ellipsis, slice(roi[0], roi[1]), slice(roi[2], roi[3])) if roi else ...
        self.stats = list(stats)

    def on_event(self, event: Event) -> Results:
        payload: dict[str, Payload] = {}
        for name, array in _arrays(event).items():
            region = array[self.region] if array.ndim >= 2 else array
            for stat in self.stats:
                payload[f"{name}_{stat}"] = np.asarray(self.REDUCERS[stat](region))
        return Event(dict(event.meta), payload)


class Downsample(Operator):
    """Bins the last two axes of each array by ``factor`` (sum or mean of each block).

    Parameters
    ----------
    factor
        Pixels per block side: 4 turns 512x512 into 128x128 (a remainder is trimmed).
    method
        How a block becomes one pixel: its ``mean`` or its ``sum``.
    """

    def __init__(self, factor: int = 2, method: Literal["mean", "sum"] = "mean") -> None:
        super().__init__()
        if factor < 1:
            raise ConfigError(f"option factor: expected 1 or more, got {factor!r}")
        if method not in ("mean", "sum"):
            raise ConfigError(f"option method: expected one of 'mean', 'sum', got {method!r}")
        self.factor = int(factor)
        self.method = method

    def _bin(self, array: np.ndarray) -> np.ndarray:
        f = self.factor
        if array.ndim < 2 or f == 1:
            return array
        *lead, height, width = array.shape
        trimmed = array[..., : height - height % f, : width - width % f]
        blocks = trimmed.reshape(*lead, height // f, f, width // f, f)
        reduce = np.mean if self.method == "mean" else np.sum
        return reduce(blocks, axis=(-3, -1))

    def on_event(self, event: Event) -> Results:
        payload = dict(event.payload)
        payload.update({name: self._bin(array) for name, array in _arrays(event).items()})
        return Event(dict(event.meta), payload)


class Threshold(Operator):
    """Zeroes every pixel below ``level`` and counts those at or above it.

    The payload keeps each array (thresholded, same dtype) and adds ``{name}_count``.

    Parameters
    ----------
    level
        Pixels below it become 0.
    drop_empty
        Publish nothing for an Event with no pixel at or above the level.
    """

    def __init__(self, level: float = 0.0, drop_empty: bool = False) -> None:
        super().__init__()
        self.level = level
        self.drop_empty = drop_empty

    def on_event(self, event: Event) -> Results:
        payload = dict(event.payload)
        total = 0
        for name, array in _arrays(event).items():
            mask = array >= self.level
            count = int(np.count_nonzero(mask))
            total += count
            payload[name] = np.where(mask, array, np.zeros((), array.dtype))
            payload[f"{name}_count"] = np.asarray(count)
        if self.drop_empty and total == 0:
            return None
        return Event(dict(event.meta), payload)
