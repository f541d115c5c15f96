"""A pytest plug-in (``pytest_plugins`` in tests/conftest.py): a test that leaves a ZeroMQ
socket open in the test process, or a context it made unterminated, fails, naming each
socket's type and where it and each context were made.

Every socket and context made in the test process is held here from the moment it is made
(pyzmq's contexts hold their sockets only weakly, and the garbage collector would close a
forgotten one quietly, with a ResourceWarning nobody sees). After a test's fixtures are
torn down, what the test made must be closed; sockets that a background thread closes (a
listener's monitor, a status thread) get :data:`GRACE_S` to do so. What is still open then
is closed with linger=0 (and a context then terminated), so that one leak fails one test.
Those made by a module's or the session's fixtures are checked when the session ends.
``zmq.Context.instance()``, which lives as long as the process, and pyzmq's own context
(its garbage collector's, for zero-copy sends) are not the tests' to close.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils import garbage

GRACE_S = 2.0
ROOT = Path(__file__).resolve().parents[2]
PYZMQ = str(Path(zmq.__file__).parent)

Made = tuple[Any, str]  # a socket or context, and where it was made


class MadeSockets:
    """The sockets and contexts made since :meth:`install`, each with where it was made."""

    def __init__(self) -> None:
        self.made: list[Made] = []
        self._lock = threading.Lock()
        self._add_socket = zmq.Context._add_socket
        self._context_init = zmq.Context.__init__

    def install(self) -> None:
        add_socket, context_init = self._add_socket, self._context_init

        def add(context: zmq.Context, socket: zmq.Socket) -> None:
            if context is not garbage.gc._context:
                self._hold(socket)
            add_socket(context, socket)

        def init(context: zmq.Context, *args: Any, **kwargs: Any) -> None:
            context_init(context, *args, **kwargs)
            self._hold(context)

        zmq.Context._add_socket = add  # type: ignore[method-assign]
        zmq.Context.__init__ = init  # type: ignore[method-assign]

    def uninstall(self) -> None:
        zmq.Context._add_socket = self._add_socket  # type: ignore[method-assign]
        zmq.Context.__init__ = self._context_init  # type: ignore[method-assign]

    def _hold(self, thing: Any) -> None:
        with self._lock:
            self.made.append((thing, _made_at()))

    def mark(self) -> int:
        with self._lock:
            return len(self.made)

    def since(self, mark: int) -> list[Made]:
        """What was made since ``mark``; no longer held here."""
        with self._lock:
            made = self.made[mark:]
            del self.made[mark:]
        return made


def _made_at() -> str:
    """Where something is being made: the first frame outside pyzmq (and this module), and
    the test's own frame when that is another."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith((PYZMQ, __file__)):
        frame = frame.f_back
    places: list[str] = []
    while frame is not None and len(places) < 2:
        filename = frame.f_code.co_filename
        if not places or Path(filename).name.startswith("test_"):
            places.append(f"{_short(filename)}:{frame.f_lineno} ({frame.f_code.co_name})")
        if Path(filename).name.startswith("test_"):
            break
        frame = frame.f_back
    return ", from ".join(places)


def _short(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else filename


def _open(thing: Any) -> bool:
    if isinstance(thing, zmq.Context):
        process_wide = thing is zmq.Context._instance or thing is garbage.gc._context
        return not (thing.closed or process_wide)
    return not thing.closed


def left_open(made: list[Made], grace: float) -> list[Made]:
    """Those of ``made`` still open after up to ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        still = [(thing, place) for thing, place in made if _open(thing)]
        if not still or time.monotonic() > deadline:
            return still
        time.sleep(0.01)


def close_and_describe(still: list[Made]) -> str:
    """One line per socket or context; each closed (sockets first, linger=0)."""
    sockets = [(s, place) for s, place in still if isinstance(s, zmq.Socket)]
    contexts = [(c, place) for c, place in still if isinstance(c, zmq.Context)]
    lines = []
    for socket, place in sockets:
        lines.append(f"  socket {zmq.SocketType(socket.type).name} made at {place}")
        socket.close(linger=0)
    for context, place in contexts:
        lines.append(f"  context made at {place}")
        context.destroy(linger=0)
    return "\n".join(lines)


@pytest.fixture(scope="session", autouse=True)
def made_sockets() -> Iterator[MadeSockets]:
    """Holds every socket and context for the whole session; at its end, those that the
    fixtures of a module or of the session made must be closed."""
    made = MadeSockets()
    made.install()
    try:
        yield made
    finally:
        made.uninstall()
    still = left_open(made.since(0), GRACE_S)
    if still:
        pytest.fail("ZeroMQ sockets or contexts made outside any test were left open:\n"
                    + close_and_describe(still), pytrace=False)


@pytest.fixture(autouse=True)
def no_open_sockets(made_sockets: MadeSockets) -> Iterator[None]:
    """Fails the test if a ZeroMQ socket or context it made is still open after its
    teardown."""
    mark = made_sockets.mark()
    yield
    still = left_open(made_sockets.since(mark), GRACE_S)
    if still:
        pytest.fail("the test left ZeroMQ sockets or contexts open:\n"
                    + close_and_describe(still), pytrace=False)
