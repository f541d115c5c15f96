"""Plug-ins written the way arroyopy's documentation and examples write them, against
arroyopy's own base classes: nothing here knows of Arroyo's runtime, only of the design's
message names (``Start.data``, ``Event.metadata``, ``Event.payload``)."""

from __future__ import annotations

import asyncio

import numpy as np
from arroyopy import Listener, Operator, Publisher

from arroyo_core import Event, Start, Stop


class FrameListener(Listener):
    """Makes one run of ``frames`` images and hands each to the operator it was given."""

    def __init__(self, operator, frames: int = 10, run: str = "r1", shape: tuple = (4, 4)):
        super().__init__(operator)
        self.frames = frames
        self.run = run
        self.shape = tuple(shape)
        self.stop_requested = False

    async def start(self) -> None:
        await self.operator.process(Start(data={"run": self.run, "shape": list(self.shape)}))
        for frame in range(self.frames):
            if self.stop_requested:
                break
            image = np.full(self.shape, frame, dtype="<f4")
            await self.operator.process(
                Event(metadata={"run": self.run, "frame": frame}, payload={"image": image}))
            await asyncio.sleep(0)
        await self.operator.process(Stop(data={"run": self.run, "frames_sent": self.frames}))

    async def stop(self) -> None:
        self.stop_requested = True


class ScaleOperator(Operator):
    """Scales every image and publishes from inside ``process``; counts in start/stop."""

    def __init__(self, factor: float = 2.0):
        super().__init__()
        self.factor = factor
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def process(self, message) -> None:
        if isinstance(message, Event):
            scaled = {name: array * self.factor for name, array in message.payload.items()}
            meta = {**message.metadata, "factor": self.factor, "started": self.started}
            await self.publish(Event(metadata=meta, payload=scaled))
        else:
            await self.publish(message)

    async def stop(self) -> None:
        print(f"ScaleOperator stopped (factor {self.factor})", flush=True)


class PrintPublisher(Publisher):
    """Prints one line per message it is given."""

    def __init__(self, prefix: str = "got"):
        self.prefix = prefix

    async def publish(self, message) -> None:
        frame = message.meta.get("frame", "-")
        print(f"{self.prefix} {message.kind} {frame}", flush=True)
