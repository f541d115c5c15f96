"""CURVE security for ZeroMQ links: encryption, and client authentication by an allow-list.

CURVE alone lets in anyone who knows the server's public key, so a link that uses it
always has an allow-list of client public keys, checked by pyzmq's ZAP handler
(:class:`zmq.auth.thread.ThreadAuthenticator`, one per process, shared by its links).

The rule: **the side of a link that binds is the CURVE server**; the side that connects
is a CURVE client. Each link is configured in the service config's ``in_options`` or
``out_options``:

=========================  ===========  ==================================================
key                        side         what it is
=========================  ===========  ==================================================
``curve_secret_key_file``  both         this side's key pair, ``NAME.key_secret``; must be
                                        readable by its owner only (``chmod 600``)
``curve_allow``            binding      the clients let in: a directory of ``NAME.key``
                                        files, one such file, or a list of files
``curve_server_key_file``  connecting   the binding side's public key, ``NAME.key``
=========================  ===========  ==================================================

Key files are pyzmq/CZMQ certificates, written by ``arroyo keys generate NAME``. A secret
key never appears in a log line, an error message or a ``repr``; public keys may.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ...errors import ConfigError
from .allow_list import AllowList, Watcher, reload_all, signature, sources
from .connections import ConnectionTracker

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ZAP_RESTART_S = 2.0  # how long a new ZAP handler waits for its predecessor's address


def generate_key_pair(name: str, directory: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 0600) in ``directory``.

    The pair is written in a private (0700) directory and then linked into place, so the
    secret file is never readable by others, not even between writing and ``chmod``; an
    existing pair is never overwritten. Returns the public and the secret file's paths.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ConfigError(f"key name {name!r} must be a plain file name")
    directory = Path(directory)
    public, secret = directory / (name + PUBLIC_SUFFIX), directory / (name + SECRET_SUFFIX)
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"{path} exists; not overwriting a key pair")
    directory.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(dir=directory, prefix=".arroyo-keys-")
    try:
        made_public, made_secret = zmq.auth.create_certificates(staging, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.link(made_secret, secret)  # link, unlike rename, fails rather than overwrite
        os.link(made_public, public)
    except FileExistsError as exc:
        raise ConfigError(f"{exc.filename2 or exc.filename} appeared meanwhile; "
                          "not overwriting a key pair") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return public, secret


def rotate_key_pair(name: str, directory: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """Replace the pair ``NAME.key``/``NAME.key_secret`` in ``directory`` with a new one,
    keeping the old as ``NAME.key.old``/``NAME.key_secret.old`` (replacing older ones).

    Servers whose allow-list names ``NAME.key`` let the new key in and the old one out at
    their next look (no restart; the old key's connections are closed); the service that
    uses the pair starts using the new key when it restarts. Returns the new files.
    """
    directory = Path(directory)
    public, secret = directory / (name + PUBLIC_SUFFIX), directory / (name + SECRET_SUFFIX)
    if not public.exists() or not secret.exists():
        raise ConfigError(f"no key pair {public} and {secret} to rotate")
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".arroyo-rotate-"))
    try:
        made_public, made_secret = generate_key_pair(name, staging)
        for path in (secret, public):
            os.replace(path, path.with_name(path.name + ".old"))
        os.replace(made_secret, secret)  # rename keeps the 0600 it was made with
        os.replace(made_public, public)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return public, secret


def _load(path: Path, what: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path}: not a readable key file ({exc})") from None
    if len(public) != 40:
        raise ConfigError(f"{what} {path}: the public key is not 40 Z85 characters")
    return public, secret


def load_secret_key(path: str | os.PathLike[str], link: str) -> tuple[bytes, bytes]:
    """Return (public, secret) from a ``NAME.key_secret`` file only its owner can access."""
    path = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{link}: curve_secret_key_file {path}: {exc.strerror}") from None
    public, secret = _load(path, f"{link}: curve_secret_key_file")
    if secret is None or len(secret) != 40:
        raise ConfigError(f"{link}: curve_secret_key_file {path} holds no secret key (is it "
                          f"the public {PUBLIC_SUFFIX} file? use NAME{SECRET_SUFFIX})")
    if mode & 0o077:
        raise ConfigError(
            f"{link}: secret key file {path} is accessible to group or others (mode "
            f"{mode:04o}); a secret key must be readable by its owner only: chmod 600 {path}")
    return public, secret


def load_public_key(path: str | os.PathLike[str], what: str) -> bytes:
    """Return the public key of a ``NAME.key`` file (refusing a secret one)."""
    path = Path(path).expanduser()
    public, secret = _load(path, what)
    if secret is not None:
        raise ConfigError(f"{what} {path} is a secret key file: give the public "
                          f"NAME{PUBLIC_SUFFIX}, and keep the secret one on its own host")
    return public


def load_allow_list(allow: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    link: str) -> frozenset[bytes]:
    """The client public keys named by ``curve_allow``: a directory of ``NAME.key`` files,
    one file, or a list of files or directories."""
    entries = [allow] if isinstance(allow, str | os.PathLike) else list(allow)
    keys: set[bytes] = set()
    for entry in entries:
        path = Path(entry).expanduser()
        files = sorted(path.glob("*" + PUBLIC_SUFFIX)) if path.is_dir() else [path]
        keys.update(load_public_key(file, f"{link}: curve_allow") for file in files)
    if not keys:
        raise ConfigError(f"{link}: curve_allow {allow!r} names no {PUBLIC_SUFFIX} file; "
                          "an empty allow-list would let no client in")
    return frozenset(keys)


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, which also remembers whose request it is checking (for the log)."""

    peer = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)


class _ZapHandler:
    """The process's one ZAP handler, started by the first CURVE server link and stopped
    when the last one closes (libzmq looks for it at a fixed inproc address per context),
    with the watcher that reloads the links' allow-lists when their files change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.authenticator: _Authenticator | None = None
        self.watcher: Watcher | None = None

    def register(self, context: zmq.Context, domain: str, link: str, allowed: frozenset[bytes],
                 allow: Any = None) -> AllowList:
        """Check ``domain``'s clients against ``allowed``, read again from ``allow`` (the
        link's ``curve_allow``) when its files change."""
        with self.lock:
            if self.authenticator is None:
                self.authenticator = self._start(context, link)
                self.watcher = Watcher(self.allow_lists)
            elif self.authenticator.context is not context:
                raise ConfigError(f"{link}: CURVE links of one process must share a context")
            authenticator = self.authenticator
            paths = sources(allow) if allow is not None else []
            allow_list = AllowList(
                link, allowed,
                (lambda: load_allow_list(allow, link)) if allow is not None else lambda: allowed,
                lambda: signature(paths, PUBLIC_SUFFIX), lambda: authenticator.peer)
            authenticator.configure_curve_callback(domain, allow_list)
            return allow_list

    def allow_lists(self) -> list[AllowList]:
        with self.lock:
            if self.authenticator is None:
                return []
            return [provider for provider in self.authenticator.credentials_providers.values()
                    if isinstance(provider, AllowList)]

    @staticmethod
    def _start(context: zmq.Context, link: str) -> _Authenticator:
        # libzmq frees the handler's inproc address only once the reaper thread has
        # destroyed the previous handler's socket, a moment after it was closed.
        deadline = time.monotonic() + ZAP_RESTART_S
        while True:
            authenticator = _Authenticator(context)
            try:
                authenticator.start()
                return authenticator
            except zmq.ZMQError as exc:
                if authenticator.zap_socket is not None:
                    authenticator.zap_socket.close(linger=0)
                    # pyzmq types zap_socket as Socket, yet sets it to None itself on stop
                    authenticator.zap_socket = None  # type: ignore[assignment]
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise ConfigError(f"{link}: cannot start the ZAP handler that checks "
                                      f"the allow-list: {exc}") from None
            time.sleep(0.002)

    def unregister(self, domain: str) -> None:
        with self.lock:
            if self.authenticator is None:
                return
            self.authenticator.credentials_providers.pop(domain, None)
            if not self.authenticator.credentials_providers:
                if self.watcher is not None:
                    self.watcher.stop()
                    self.watcher = None
                self.authenticator.stop()
                self.authenticator = None


_zap = _ZapHandler()


def reload_allow_lists() -> int:
    """Read every CURVE server link's allow-list of this process again if its files
    changed, now rather than at the watcher's next look. Returns how many changed."""
    return reload_all(_zap.allow_lists())


class CurveLink:
    """One link's CURVE keys, loaded and checked when the link is configured, so that a
    bad key file stops a service before it opens anything.

    Use :meth:`from_options`; then :meth:`secure` a socket before it binds or connects,
    and :meth:`release` after it is closed.
    """

    def __init__(self, link: str, public_key: bytes, secret_key: bytes, *,
                 allowed: frozenset[bytes] = frozenset(), server_key: bytes | None = None,
                 domain: str = "", allow: Any = None) -> None:
        self.link = link
        self.server = server_key is None
        self.public_key = public_key
        self._secret_key = secret_key
        self.allowed = allowed
        self.server_key = server_key
        self.domain = domain
        self.allow = allow  # where ``allowed`` was read, read again when it changes
        self.allow_list: AllowList | None = None  # while a socket is secured
        self._registered = False

    @classmethod
    def from_options(cls, link: str, address: str, bind: bool,
                     secret_key_file: str | None = None, server_key_file: str | None = None,
                     allow: Any = None) -> CurveLink | None:
        """Build from a link's ``curve_*`` options; None if it has none (no security)."""
        if secret_key_file is None:
            if server_key_file is not None or allow is not None:
                raise ConfigError(f"{link}: CURVE needs curve_secret_key_file (this side's "
                                  f"NAME{SECRET_SUFFIX})")
            return None
        public, secret = load_secret_key(secret_key_file, link)
        if bind:
            if server_key_file is not None:
                raise ConfigError(f"{link}: binds, so it is the CURVE server and takes "
                                  "curve_allow, not curve_server_key_file")
            if allow is None:
                raise ConfigError(f"{link}: binds, so it is the CURVE server and needs "
                                  "curve_allow (the client public keys it lets in)")
            return cls(link, public, secret, allowed=load_allow_list(allow, link),
                       domain=f"arroyo {address}", allow=allow)
        if allow is not None:
            raise ConfigError(f"{link}: connects, so it is a CURVE client: curve_allow belongs "
                              "on the side that binds")
        if server_key_file is None:
            raise ConfigError(f"{link}: connects, so it is a CURVE client and needs "
                              f"curve_server_key_file (the binding side's NAME{PUBLIC_SUFFIX})")
        return cls(link, public, secret,
                   server_key=load_public_key(server_key_file, f"{link}: curve_server_key_file"))

    def secure(self, socket: zmq.Socket, tracker: ConnectionTracker | None = None) -> None:
        """Set CURVE on ``socket`` (before it binds or connects); a server's allow-list is
        checked from then on, and a server with no ZAP handler refuses every client.
        ``tracker`` (the socket's) lets a key removed from the list have its connections
        closed."""
        if self.server:
            self.allow_list = _zap.register(socket.context, self.domain, self.link,
                                            self.allowed, self.allow)
            if tracker is not None:
                self.allow_list.close_from = tracker.close_from
            self._registered = True
            socket.setsockopt(zmq.ZAP_DOMAIN, self.domain.encode())
            socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            socket.setsockopt(zmq.CURVE_SERVER, 1)
            socket.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key)
        else:
            # a client is a link built with a server key (self.server is its absence)
            socket.setsockopt(zmq.CURVE_SERVERKEY, cast(bytes, self.server_key))
            socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
            socket.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key)
        log.info("%s: CURVE %s, public key %s%s", self.link,
                 "server" if self.server else "client", self.public_key.decode(),
                 f", {len(self.allowed)} client key(s) allowed" if self.server else "")

    def release(self) -> None:
        """Stop checking this link's allow-list (after its socket is closed)."""
        if self._registered:
            self._registered = False
            self.allow_list = None
            _zap.unregister(self.domain)

    def __repr__(self) -> str:  # never the secret key
        role = "server" if self.server else "client"
        return f"CurveLink({self.link!r}, {role}, public_key={self.public_key.decode()!r})"
