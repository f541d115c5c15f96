"""The live view's web server (aiohttp, on a thread of its own with its own event loop).

``/`` is the page, ``/ws`` a WebSocket that sends the state (run, frame, rates, 1-D
arrays) whenever a newer event was taken, at most ``fps`` times a second, ``/frame.png``
the latest image (``?cmap=NAME&log=1``) and ``/state`` the state once, as JSON.

A slow browser slows only its own connection: each WebSocket sends the newest state when
its previous send has gone out, skipping what came in between, and the page asks for the
next image when it has shown the last. Nothing here waits on the stream, nor the stream
on it: both only read :class:`~arroyo_core.view.latest.Latest`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import weakref
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, web

from ..errors import ConfigError
from .latest import Latest, Snapshot
from .render import CMAPS, DEFAULT_CMAP, png

log = logging.getLogger(__name__)


def _finite(values: Any) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in map(float, values)]


def state(snap: Snapshot, rates: tuple[float, float]) -> dict[str, Any]:
    """The page's state as JSON-safe data."""
    image = None
    if snap.image is not None:
        image = {"name": snap.image_name, "shape": list(snap.image_shape),
                 "shown": list(snap.image.shape)}
    return {"version": snap.version, "run": snap.run, "frame": snap.frame,
            "frames": snap.frames, "total": snap.total, "running": snap.running,
            "rate": round(rates[0], 2), "mb_per_s": round(rates[1], 3), "image": image,
            "plots": {name: _finite(values) for name, values in snap.plots.items()},
            "values": {name: _finite([v])[0] for name, v in snap.values.items()},
            "meta": snap.meta, "cmaps": list(CMAPS)}


class ViewServer:
    """Serves the view of ``latest`` at http://HOST:PORT/ between :meth:`start` and
    :meth:`stop` (port 0: one the system picks; :attr:`url` says which)."""

    def __init__(self, latest: Latest, host: str = "127.0.0.1", port: int = 8080,
                 fps: float = 10.0) -> None:
        self.latest = latest
        self.host, self.port = host, port
        self.period = 1.0 / max(0.1, fps)
        self.url = ""
        self.clients = 0
        self.images = 0  # PNGs rendered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="arroyo-view", daemon=True)
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._cache: tuple[tuple[int, str, bool], bytes] | None = None

    def start(self) -> None:
        """Listen (a ConfigError says why it cannot) and serve from the server's thread."""
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise ConfigError(f"view: cannot serve on {self.host}:{self.port}: "
                              f"{self._error}") from None

    def stop(self) -> None:
        """Close every connection and stop serving."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/frame.png", self._image)
        app.router.add_get("/state", self._state)
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            self._error = exc
            self._started.set()
            await runner.cleanup()
            return
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/"
        self._started.set()
        log.info("view: serving %s", self.url)
        await self._stopping.wait()
        await runner.cleanup()

    async def _close_sockets(self, app: web.Application) -> None:
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")

    async def _page(self, request: web.Request) -> web.Response:
        page = resources.files(__package__).joinpath("page.html").read_text()
        return web.Response(text=page, content_type="text/html")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(state(self.latest.snapshot(), self.latest.rates()))

    async def _image(self, request: web.Request) -> web.Response:
        cmap = request.query.get("cmap", DEFAULT_CMAP)
        log_scale = request.query.get("log", "0") in ("1", "true", "on")
        if cmap not in CMAPS:
            raise web.HTTPBadRequest(text=f"unknown colour map {cmap!r}; one of {CMAPS}")
        snap = self.latest.snapshot()
        if snap.image is None:
            raise web.HTTPNotFound(text="no image yet")
        key = (snap.version, cmap, log_scale)
        if self._cache is None or self._cache[0] != key:
            # PNG encoding takes milliseconds: off the event loop, so the sockets stay live
            body = await asyncio.get_running_loop().run_in_executor(
                None, png, snap.image, cmap, log_scale)
            self._cache = (key, body)
            self.images += 1
        return web.Response(body=self._cache[1], content_type="image/png",
                            headers={"Cache-Control": "no-store",
                                     "X-Arroyo-Version": str(snap.version)})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=10.0)
        await socket.prepare(request)
        self._sockets.add(socket)
        self.clients += 1
        sender = asyncio.create_task(self._send_states(socket))
        try:
            async for _ in socket:  # the page sends nothing; this notices it leave
                pass
        finally:
            sender.cancel()
            self.clients -= 1
        return socket

    async def _send_states(self, socket: web.WebSocketResponse) -> None:
        sent = -1
        while not socket.closed:
            snap = self.latest.snapshot()
            if snap.version != sent:
                sent = snap.version
                try:
                    # waits while this browser's connection is full: only this one slows
                    await socket.send_json(state(snap, self.latest.rates()))
                except ConnectionError:  # it left (or missed its heartbeats) meanwhile
                    return
            await asyncio.sleep(self.period)
