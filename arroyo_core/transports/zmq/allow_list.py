"""A CURVE server link's allow-list, which follows its files while the service runs.

The keys named by ``curve_allow`` (a directory of ``NAME.key`` files, one file, or a list)
are read when the link opens and again whenever those files change: a watcher checks
them every :data:`WATCH_S` seconds (names, sizes, modification times;
``curve.reload_allow_lists`` checks at once). No signal is needed: SIGHUP keeps its
meaning for a service started in a terminal (the terminal closed: stop). A change
is logged with the keys added and removed. A removed key's open connections are closed:
libzmq offers no way to close one connection of a socket, so the descriptors of the
connections from the hosts that presented that key are shut down, and their clients must
pass the new list to come back (a client on the same host with a key still listed
reconnects at once). A list that cannot be read, or would be empty, is refused with an
error and the old one is kept.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError

log = logging.getLogger(__name__)

WATCH_S = 1.0  # how often the allow-lists' files are looked at
MAX_LOGGED_KEYS = 1024  # refused keys logged by name; every refusal is counted by the monitor
MAX_HOSTS_PER_KEY = 64  # hosts remembered per allowed key, to close their connections


def sources(allow: Any) -> list[Path]:
    """The files and directories ``curve_allow`` names."""
    entries = [allow] if isinstance(allow, str | os.PathLike) else list(allow)
    return [Path(entry).expanduser() for entry in entries]


def signature(paths: Sequence[Path], suffix: str) -> tuple[Any, ...]:
    """What changes when a key is added, removed or rewritten under ``paths``."""
    found: list[Any] = []
    for path in paths:
        files = sorted(path.glob("*" + suffix)) if path.is_dir() else [path]
        for file in files:
            try:
                info = file.stat()
                found.append((str(file), info.st_ino, info.st_size, info.st_mtime_ns))
            except OSError:
                found.append((str(file), None))
    return tuple(found)


class AllowList:
    """pyzmq's CURVE credentials provider for one link: lets in the listed keys only.

    Parameters
    ----------
    link
        The link's name, for log lines.
    keys
        The keys let in (as read when the link was configured).
    load
        Reads the list from its files (raises ConfigError if it cannot, or it is empty).
    watched
        Returns the files' :func:`signature`; a new one means :meth:`reload` reads again.
    peer
        Returns the address of the client whose ZAP request is being checked.
    """

    def __init__(self, link: str, keys: frozenset[bytes], load: Callable[[], frozenset[bytes]],
                 watched: Callable[[], tuple[Any, ...]], peer: Callable[[], str]) -> None:
        self.link = link
        self._load = load
        self._watched = watched
        self._peer = peer
        self._seen: tuple[Any, ...] | None = None  # read again at the first look
        self.keys = keys
        self.logged: set[bytes] = set()
        self.hosts: dict[bytes, set[str]] = {}  # allowed key -> hosts that presented it
        self.close_from: Callable[[set[str]], int] | None = None  # set by the link's socket
        self._lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's question, on the ZAP thread: may a client with ``key`` come in?"""
        if key in self.keys:
            with self._lock:
                hosts = self.hosts.setdefault(key, set())
                if len(hosts) < MAX_HOSTS_PER_KEY:
                    hosts.add(self._peer())
            return True
        if key not in self.logged and len(self.logged) < MAX_LOGGED_KEYS:
            self.logged.add(key)
            log.warning("%s: refused CURVE client at %s with public key %s: not on the "
                        "allow-list", self.link, self._peer(), key.decode())
        return False

    def reload(self) -> bool:
        """Read the list again if its files changed; True if the keys changed."""
        seen = self._watched()
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            keys = self._load()
        except ConfigError as exc:
            log.error("%s: the allow-list changed but cannot be used, so the old one (%d "
                      "key(s)) stays: %s", self.link, len(self.keys), exc)
            return False
        added, removed = keys - self.keys, self.keys - keys
        if not added and not removed:
            return False
        self.keys = keys
        self.logged -= added
        with self._lock:
            hosts = set().union(*(self.hosts.pop(key, set()) for key in removed))
        closed = self.close_from(hosts) if self.close_from is not None and hosts else 0
        log.warning("%s: allow-list changed, now %d key(s); let in %s; no longer %s; closed "
                    "%d connection(s) from %s that used a removed key", self.link, len(keys),
                    _keys(added), _keys(removed), closed, ", ".join(sorted(hosts)) or "no host")
        return True


def _keys(keys: frozenset[bytes]) -> str:
    return ", ".join(sorted(key.decode() for key in keys)) or "none"


class Watcher:
    """A thread that reloads the registered allow-lists every :data:`WATCH_S` seconds."""

    def __init__(self, lists: Callable[[], list[AllowList]]) -> None:
        self._lists = lists
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="arroyo-allow-list")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WATCH_S):
            reload_all(self._lists())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


_reloading = threading.Lock()  # the watcher and a SIGHUP may ask at once


def reload_all(lists: list[AllowList]) -> int:
    """Reload each list whose files changed; the number that changed."""
    changed = 0
    with _reloading:
        for allow_list in lists:
            try:
                changed += allow_list.reload()
            except Exception:  # one link's trouble must not stop the others' rotation
                log.exception("%s: reloading the allow-list failed", allow_list.link)
    return changed
