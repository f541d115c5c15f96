"""Which ends of a chain's links meet: for ``arroyo check``, the order services start in,
and compose's ``depends_on``. Addresses only; nothing is opened.

How two ends meet depends on the address's scheme (:data:`MEETING`):

==============  ========================================================================
``point``       tcp, ipc, inproc, shm: an address one service connects to (``>``) is bound
                (``@``) by another; a wildcard bind is reached at the binder's host.
``broker``      redis, rediss: a service writing a stream or channel and one reading it,
                on the same server and database; amqp, amqps: a service publishing to a
                queue or an exchange and one consuming it, on the same broker and vhost.
                Neither side binds.
anything else   parsed only: the checker pairs nothing over a transport it does not know.
==============  ========================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from arroyo_core.address import Address

MEETING: dict[str, Literal["point", "broker"]] = {
    "tcp": "point", "ipc": "point", "inproc": "point", "shm": "point", "redis": "broker",
    "rediss": "broker", "amqp": "broker", "amqps": "broker"}
PEERS = {"push": "pull", "pull": "push", "pub": "sub", "sub": "pub", "dispatch": "worker",
         "worker": "dispatch"}
OPPOSITE = {"in": "out", "out": "in"}
LOCAL = {"127.0.0.1", "localhost", "::1"}
ANYWHERE = {"*", "0.0.0.0", "::"}
BROKER_PORTS = {"redis": "6379", "rediss": "6379", "amqp": "5672", "amqps": "5671"}


@dataclass(frozen=True)
class LinkEnd:
    """One address of a service: which key it comes from, the address (resolved), its
    pattern, the service its address names through a placeholder (if any), and for a
    broker address the place on the broker where writers and readers meet."""

    service: str
    key: str
    address: Address
    pattern: str
    names: str | None
    place: tuple[str, ...] | None = None

    @property
    def meeting(self) -> str | None:
        return MEETING.get(self.address.scheme)

    def __str__(self) -> str:
        return f"[{self.service}] {self.key} {self.address}"


def broker_place(address: Address, options: Mapping[str, Any]) -> tuple[str, ...] | None:
    """(host, port, database or vhost, kind, name) of a broker address, kind being 'stream'
    or 'channel' (Redis), 'exchange' or 'queue' (AMQP); None for other addresses. The kind
    and name come from the address's query or the link's options."""
    if MEETING.get(address.scheme) != "broker":
        return None
    given = {**address.query, **options}
    host = "localhost" if address.host in LOCAL else address.host
    port = address.port or BROKER_PORTS[address.scheme]
    if address.scheme.startswith("amqp"):  # (an exchange address may name a queue too)
        kind = "exchange" if given.get("exchange") else "queue"
        return (host, port, unquote(address.path[1:]) or "/", kind, str(given.get(kind, "")))
    kind = next((k for k in ("stream", "channel") if given.get(k)), "")
    return (host, port, address.path.strip("/") or "0", kind, str(given.get(kind, "")))


def pairs(ends: list[LinkEnd], hosts: Mapping[str, str]) -> list[tuple[LinkEnd, LinkEnd]]:
    """(seeking end, end it finds) for every connection between two services: a connect
    and the bind it reaches, or a broker reader and a writer of the same place."""
    found = []
    for end in ends:
        if not _seeks(end):
            continue
        for other in ends:
            if other.service == end.service or other.key != OPPOSITE[end.key]:
                continue
            if end.meeting == "point":
                met = (other.meeting == "point" and other.address.bind
                       and _reaches(end.address, other.address, hosts[other.service]))
            else:
                met = other.meeting == "broker" and other.place == end.place
            if met:
                found.append((end, other))
    return found


def flows(links: list[tuple[LinkEnd, LinkEnd]]) -> Iterator[tuple[str, str]]:
    """(upstream service, downstream service) for each link: data goes from out to in."""
    for end, other in links:
        yield (other.service, end.service) if end.key == "in" else (end.service, other.service)


def problems(ends: list[LinkEnd], hosts: Mapping[str, str],
             external: tuple[str, ...] = ()) -> list[str]:
    """What is wrong: a connect that no service binds (or not the service it names),
    mismatched patterns, two binds of one address, a broker place nobody writes."""
    found = []
    links = pairs(ends, hosts)
    external = tuple(text.lstrip("@>") for text in external)  # with or without a prefix
    for end in ends:
        if not _seeks(end) or end.address.text in external:
            continue
        peers = [other for seeker, other in links if seeker == end]
        if end.meeting == "broker":
            if not peers:
                kind, name = end.place[3:] if end.place else ("", "")
                found.append(f"{end}: no service in the chain writes {kind} {name!r} on that "
                             "server. If a program outside the chain does, say so in the "
                             f"chain file, at its top level: external = "
                             f"[\"{end.address.text}\"]")
            continue
        if not peers:
            found.append(f"{end}: no service in the chain binds it. If a program outside "
                         "the chain binds it, say so in the chain file, at its top level: "
                         f"external = [\"{end.address.text}\"]; else bind it in one of "
                         "the chain's services (e.g. its out = \"@...\" or a sink's "
                         "address option)")
        elif end.names and all(b.service != end.names for b in peers):
            found.append(f"{end}: names '{end.names}' but is bound by "
                         f"{sorted({b.service for b in peers})}")
        for bound in peers:
            if PEERS.get(end.pattern) != bound.pattern:
                found.append(f"{end} ({end.pattern}) is bound by {bound} ({bound.pattern}): "
                             f"{end.pattern} needs {PEERS.get(end.pattern)}")
    seen: dict[tuple[str, str, str], LinkEnd] = {}
    for end in ends:
        if end.meeting != "point" or not end.address.bind or end.address.port == "*":
            continue  # (each bind of port '*' gets a port of its own)
        place = _bind_place(end.address, hosts[end.service])
        if place in seen:
            found.append(f"{end} and {seen[place]} bind the same address")
        seen[place] = end
    return found


def pool_problems(ends: list[LinkEnd], replicas: Mapping[str, int]) -> list[str]:
    """A pool's workers cannot all bind one address: each data link of a service with
    replicas > 1 must connect (the service before it and the one after it bind)."""
    found = []
    for end in ends:
        count = replicas.get(end.service, 1)
        if count > 1 and end.key in OPPOSITE and end.meeting == "point" and end.address.bind:
            other = "the service that feeds it" if end.key == "in" else "the next service"
            found.append(f"{end}: [{end.service}] has replicas = {count}, whose workers "
                         f"cannot all bind one address; let {other} bind and the workers "
                         f"connect ({end.key} = \">...\")")
    return found


def nth_address(text: str, index: int) -> str:
    """The status address of worker ``index`` of a pool: the port + index for tcp (a
    wildcard port stays one), the path + ``-index`` for ipc."""
    address = Address.parse(text, bind_by_default=True)
    prefix = text[0] if text[0] in "@>" else ""
    if address.scheme == "tcp" and address.port.isdigit():
        head, _, port = address.text.rpartition(":")
        return f"{prefix}{head}:{int(port) + index}"
    if address.scheme in ("ipc", "inproc"):
        return f"{prefix}{address.text}-{index}"
    return text


def reaches(connect: Address, bound: Address, bound_host: str) -> bool:
    """Whether connecting to ``connect`` reaches ``bound``, bound by a service on
    ``bound_host`` (tcp, ipc, inproc)."""
    return _reaches(connect, bound, bound_host)


def _seeks(end: LinkEnd) -> bool:
    """Whether ``end`` must find a peer: a data link's connect, or a broker's reader."""
    if end.key not in OPPOSITE:
        return False  # a status socket: `arroyo status` is its peer
    if end.meeting == "point":
        return not end.address.bind
    return end.meeting == "broker" and end.key == "in"


def _split(address: Address) -> tuple[str, str, str]:
    """('tcp', host, port), ('shm', host, port) or (transport, path, '')."""
    transport, _, rest = address.text.partition("://")
    if transport == "tcp" or (transport == "shm" and not rest.startswith("/")):
        host, _, port = rest.rpartition(":")
        return transport, host.strip("[]"), port
    return transport, rest, ""


def _reaches(connect: Address, bound: Address, bound_host: str) -> bool:
    """Whether connecting to ``connect`` reaches a socket bound at ``bound`` by a service
    whose host is ``bound_host``."""
    c_transport, c_host, c_port = _split(connect)
    b_transport, b_host, b_port = _split(bound)
    if c_transport != b_transport:
        return False
    if not c_port:
        return c_host == b_host  # ipc path / inproc name / shm path
    if c_port != b_port:
        return False
    if b_host in ANYWHERE:
        return c_host == bound_host or (c_host in LOCAL and bound_host in LOCAL)
    return c_host == b_host or (c_host in LOCAL and b_host in LOCAL)


def _bind_place(address: Address, host: str) -> tuple[str, str, str]:
    transport, bind_host, port = _split(address)
    if port and (bind_host in ANYWHERE or bind_host in LOCAL):
        bind_host = host
    return transport, bind_host, port
