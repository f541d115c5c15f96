"""Link addresses: ``[@|>]scheme://rest``, where the scheme picks the transport.

A leading ``@`` binds and ``>`` connects (the CZMQ convention); without either, outputs
bind and inputs connect. The rest is read with :func:`urllib.parse.urlsplit`, so
``tcp://[::1]:5555``, ``ipc:///tmp/a.sock`` and ``redis://h:6379/0?stream=frames`` all
parse the same way. What a transport accepts beyond that is for the transport to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError

_SCHEME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_ANY_PORT = ("tcp", "shm")  # schemes where port '*' binds a port the system picks
FORMS = ("@tcp://*:5555 (bind), >tcp://host:5555 (connect), ipc:///path or "
         "redis://host:6379/0?stream=NAME")  # what help and errors show


# user:password@ after the scheme, up to the last @ (a password that was not URL-quoted may
# hold ':', '/' or '@' itself): what an error about an address that does not parse hides
_CREDENTIALS = re.compile(r"(://[^:/?#@\s]*:)\S*@")


def redact(text: str) -> str:
    """``text`` (an address, a URL, or a message naming one) with any password in it
    replaced by ``***``, for logs, errors and the ledger."""
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class Address:
    """One end of a link: the address text, whether this side binds, and its parts."""

    text: str  # without the @/> prefix
    bind: bool
    scheme: str = field(init=False)
    host: str = field(init=False)  # lower case, without [] around IPv6; '' if none
    port: str = field(init=False)  # '' if none; '*' for an ephemeral port
    path: str = field(init=False)
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        scheme, sep, rest = self.text.partition("://")
        if not sep or not scheme or set(scheme) - _SCHEME_CHARS or not rest or " " in rest:
            raise ConfigError(f"{redact(self.text)!r} is not a valid address: expected "
                              f"[@|>]scheme://..., e.g. {FORMS}")
        parts = urlsplit(self.text.replace(":*", ":0", 1) if scheme in _ANY_PORT else self.text)
        try:
            host = parts.hostname or ""
            port = "" if parts.port is None else str(parts.port)
        except ValueError as exc:  # a port that is not a number, or out of range
            why = str(exc) if "@" not in self.text else (  # (the text may show a password)
                "its port is not a number, or a password holding ':', '/' or '@' is not "
                "URL-quoted (%3A, %2F, %40)")
            raise ConfigError(f"{redact(self.text)!r} is not a valid address: {why}") from None
        if scheme in _ANY_PORT and rest.rsplit(":", 1)[-1] == "*":
            port = "*"
        for name, value in (("scheme", scheme), ("host", host), ("port", port),
                            ("path", parts.path),
                            ("query", dict(parse_qsl(parts.query, keep_blank_values=True)))):
            object.__setattr__(self, name, value)

    @classmethod
    def parse(cls, text: str, bind_by_default: bool) -> Address:
        """Read ``[@|>]scheme://...``; raise ConfigError naming what is wrong."""
        if not isinstance(text, str) or not text:
            raise ConfigError(f"address {text!r} is not a string such as {FORMS}")
        if text[0] in "@>":
            return cls(text[1:], text[0] == "@")
        return cls(text, bind_by_default)

    @property
    def base(self) -> str:
        """The address without its query (what a transport connects to)."""
        return self.text.split("?", 1)[0]

    @property
    def shown(self) -> str:
        """The address as logs and status show it: ``@``/``>`` first, a password hidden."""
        text = self.text
        password = urlsplit(text).password if "@" in text else None
        if password:
            text = text.replace(f":{password}@", ":***@", 1)
        return ("@" if self.bind else ">") + text

    def __str__(self) -> str:
        return ("@" if self.bind else ">") + self.text
