"""A live view of a stream in the browser: the ``view`` sink.

::

    ViewSink (publisher plug-in)    takes every message on the processing thread
    ├── Latest   (latest.py)        keeps a small copy of the newest frame
    └── ViewServer (server.py)      aiohttp on its own thread: page, WebSocket, PNGs
        └── png  (render.py)        colour map (matplotlib) and log scale, Pillow encodes

Run it as ``arroyo view ADDRESS`` (a subscriber whose queue keeps only the latest event),
or as any publisher: ``arroyo publisher --in '>tcp://host:5556' --in-pattern sub
--queue-policy keep-latest --sink view -o port=8080``.
"""

from __future__ import annotations

from typing import Any

from ..components import Publisher
from ..message import Message
from ..status import LinkStatus
from .latest import Latest, Snapshot

__all__ = ["Latest", "Snapshot", "ViewSink"]

INSTALL = "arroyo-stream[view]"


class ViewSink(Publisher):
    """Serves a web page showing the newest frame (colour map, log scale), the newest 1-D
    arrays as plots, and run, frame numbers and rates, updated live over a WebSocket.

    It may skip frames (a view shows the newest), and a slow browser never holds up the
    stream; run its service with ``queue_policy = "keep-latest"`` so that the sink's own
    work never holds up the link either.

    Parameters
    ----------
    port
        TCP port of the web page (0: one the system picks; the log and the status say it).
    host
        Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 for every network.
    image
        Payload array to show as the image (default: the first with 2 or more dimensions).
    fps
        Most updates a second sent to each browser.
    max_side
        Largest side of the image shown, in pixels (bigger frames are decimated).
    """

    requires = {"aiohttp": INSTALL, "matplotlib": INSTALL, "PIL": INSTALL}

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", image: str | None = None,
                 fps: float = 10.0, max_side: int = 1024) -> None:
        self.latest = Latest(image=image, max_side=max_side)
        self.host, self.port, self.fps = host, int(port), float(fps)
        self.server: Any = None

    def open(self) -> None:
        from .server import ViewServer

        self.server = ViewServer(self.latest, self.host, self.port, self.fps)
        self.server.start()

    def publish(self, message: Message) -> None:
        self.latest.take(message)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def status(self) -> LinkStatus:
        snap = self.latest.snapshot()
        server = self.server
        return LinkStatus(
            name=f"view {server.url if server else ''}".strip(), direction="output",
            kind="sink", sent=snap.total,
            transport={"url": server.url if server else None,
                       "clients": server.clients if server else 0,
                       "images": server.images if server else 0, "bytes": snap.bytes})
