"""A chain file describes every service of one chain, so that one file drives every way of
running it (all in the foreground, under supervisor, as containers, across hosts).

A chain file is TOML or YAML::

    name = "arroyo"                      # the supervisor group and the compose project

    [services.source]                    # one service; its name is the table's name
    role = "listener"                    # listener | operator | publisher
    source = "simulated"                 # then the keys build_runtime takes (service.KEYS)
    options = {frames = 1000, rate = 50}
    out = "@tcp://*:5555"
    stats = "tcp://*:6000"

    [services.operator]
    role = "operator"
    host = "10.0.0.2"                    # where the other services reach it [127.0.0.1]
    in = ">tcp://{source}:5555"          # {source} stands for the host of service 'source'
    out = "@tcp://*:5556"

    [services.operator.program]          # supervisor [program:operator] keys to set
    startsecs = 5

``{name}`` in an address is the named service's ``host`` when services run on hosts
(``arroyo run``, supervisor, several machines) and its service name under docker compose,
so the same file serves both. Everything here is plain data: nothing is opened or started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .address import Address
from .errors import ConfigError
from .service import KEYS, ROLES, load_config

Target = Literal["hosts", "compose"]

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # valid as a supervisor program and a DNS name
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
CHAIN_KEYS = {"name", "services", "external"}
SERVICE_KEYS = {"role", "host", "program"}
LINK_KEYS = ("in", "out", "stats")
# The supervisor [program:x] keys a chain file may set (supervisord's own spelling).
PROGRAM_KEYS = {
    "command", "directory", "umask", "priority", "autostart", "autorestart", "startsecs",
    "startretries", "exitcodes", "stopsignal", "stopwaitsecs", "stopasgroup", "killasgroup",
    "user", "redirect_stderr", "stdout_logfile", "stdout_logfile_maxbytes",
    "stdout_logfile_backups", "stderr_logfile", "stderr_logfile_maxbytes",
    "stderr_logfile_backups", "environment",
}
PEERS = {"push": "pull", "pull": "push", "pub": "sub", "sub": "pub"}
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ChainService:
    """One service of a chain: its role, its build_runtime keys (addresses may hold
    ``{name}`` placeholders), the host others reach it at, and supervisor settings."""

    name: str
    role: str
    config: Mapping[str, Any]
    host: str = DEFAULT_HOST
    program: Mapping[str, Any] = field(default_factory=dict)

    @property
    def drain_timeout(self) -> float:
        return float(self.config.get("drain_timeout", 10.0))


@dataclass(frozen=True)
class LinkEnd:
    """One socket of a service: which key it comes from, its resolved endpoint, its
    pattern, and the service its address names through a placeholder (if any)."""

    service: str
    key: str
    endpoint: Address
    pattern: str
    names: str | None

    def __str__(self) -> str:
        return f"[{self.service}] {self.key} {self.endpoint}"


@dataclass(frozen=True)
class Chain:
    """The services of one chain, in the order of the file."""

    name: str
    services: dict[str, ChainService]
    external: tuple[str, ...] = ()
    origin: str = "<chain>"

    def select(self, names: list[str] | tuple[str, ...] = (), host: str | None = None) -> Chain:
        """The chain limited to the services called ``names`` and/or placed on ``host``
        (all when neither is given); addresses still resolve against the whole chain."""
        unknown = set(names) - set(self.services)
        if unknown:
            raise ConfigError(f"{self.origin}: no service {sorted(unknown)}; "
                              f"the chain has {list(self.services)}")
        kept = {name: svc for name, svc in self.services.items()
                if (not names or name in names) and (host is None or svc.host == host)}
        if not kept:
            raise ConfigError(f"{self.origin}: no service matches {list(names) or ''}"
                              f"{' on host ' + host if host else ''}")
        return _Selection(self.name, kept, self.external, self.origin, self.services)

    def hosts(self, target: Target = "hosts") -> dict[str, str]:
        """What ``{name}`` stands for: each service's host, or its compose service name."""
        every = self.all_services()
        if target == "compose":
            return {name: name for name in every}
        return {name: svc.host for name, svc in every.items()}

    def all_services(self) -> dict[str, ChainService]:
        return self.services

    def resolve(self, name: str, target: Target = "hosts") -> dict[str, Any]:
        """The build_runtime config of service ``name`` with its placeholders filled in."""
        service = self.all_services()[name]
        hosts = self.hosts(target)
        config = dict(service.config)
        for key in LINK_KEYS:
            if key in config:
                value = config[key]
                config[key] = ([_fill(v, hosts) for v in value] if isinstance(value, list)
                               else _fill(value, hosts))
        return config

    def ends(self, target: Target = "hosts") -> list[LinkEnd]:
        """Every socket of every service (data links and status sockets)."""
        ends = []
        for name, service in self.all_services().items():
            config = self.resolve(name, target)
            for key in LINK_KEYS:
                raw = service.config.get(key)
                if not raw:
                    continue
                for raw_one, text in zip(_as_list(raw), _as_list(config[key]), strict=True):
                    match = PLACEHOLDER.search(raw_one)
                    pattern = {"in": config.get("in_pattern") or "pull",
                               "out": config.get("out_pattern") or "push",
                               "stats": "rep"}[key]
                    try:
                        endpoint = Address.parse(text, key != "in")
                    except ConfigError as exc:
                        raise ConfigError(f"{self.origin}: [{name}] {key}: {exc}") from None
                    ends.append(LinkEnd(name, key, endpoint, pattern,
                                        match.group(1) if match else None))
        return ends

    def links(self, target: Target = "hosts") -> list[tuple[LinkEnd, LinkEnd]]:
        """(connecting end, binding end) for every connection inside the chain."""
        ends = self.ends(target)
        hosts = self.hosts(target)
        pairs = []
        for connect in ends:
            if connect.endpoint.bind or connect.key == "stats":
                continue
            for bound in ends:
                if (bound.endpoint.bind and bound.service != connect.service
                        and bound.key == {"in": "out", "out": "in"}[connect.key]
                        and _reaches(connect.endpoint.text, bound.endpoint.text,
                                     hosts[bound.service])):
                    pairs.append((connect, bound))
        return pairs

    def problems(self) -> list[str]:
        """What is wrong with the links: a connect that no service binds (or not the
        service it names), mismatched patterns, two binds of one address."""
        found = []
        links = self.links()
        for end in self.ends():
            if end.endpoint.bind or end.key == "stats":
                continue
            if end.endpoint.text in self.external:
                continue
            binders = [bound for connect, bound in links if connect == end]
            if not binders:
                found.append(f"{end}: no service in the chain binds it (list it under "
                             "'external' if something outside the chain does)")
            elif end.names and all(b.service != end.names for b in binders):
                found.append(f"{end}: names '{end.names}' but is bound by "
                             f"{sorted({b.service for b in binders})}")
            for bound in binders:
                if PEERS.get(end.pattern) != bound.pattern:
                    found.append(f"{end} ({end.pattern}) is bound by {bound} ({bound.pattern}): "
                                 f"{end.pattern} needs {PEERS.get(end.pattern)}")
        hosts = self.hosts()
        seen: dict[tuple[str, str, str], LinkEnd] = {}
        for end in self.ends():
            if not end.endpoint.bind:
                continue
            place = _bind_place(end.endpoint.text, hosts[end.service])
            if place in seen:
                found.append(f"{end} and {seen[place]} bind the same address")
            seen[place] = end
        return found

    def order(self) -> list[str]:
        """Service names, upstream first (the file's order among equals)."""
        depth = self.depth()
        return sorted(self.services, key=lambda name: -depth[name])

    def depth(self) -> dict[str, int]:
        """Hops from each service to the end of the chain (0 for sinks): start the deepest
        last and stop it first, so nothing waits on a peer that is not there yet."""
        every = list(self.all_services())
        downstream: dict[str, set[str]] = {name: set() for name in every}
        for connect, bound in self.links():
            up, down = ((bound.service, connect.service) if connect.key == "in"
                        else (connect.service, bound.service))
            downstream[up].add(down)
        memo: dict[str, int] = {}

        def walk(name: str, path: frozenset[str]) -> int:
            if name not in memo:
                nxt = [walk(d, path | {name}) for d in downstream[name] if d not in path]
                memo[name] = 1 + max(nxt) if nxt else 0
            return memo[name]

        return {name: walk(name, frozenset()) for name in self.services}


@dataclass(frozen=True)
class _Selection(Chain):
    """Part of a chain: addresses and links still see every service."""

    every: dict[str, ChainService] = field(default_factory=dict)

    def all_services(self) -> dict[str, ChainService]:
        return self.every


def load_chain(path: str | Path) -> Chain:
    """Read and check a chain file (``.toml``, ``.yaml`` or ``.yml``)."""
    return parse_chain(load_config(path), origin=str(path))


def parse_chain(data: Mapping[str, Any], origin: str = "<chain>") -> Chain:
    """Check chain data (as read from a file) and return the Chain it describes."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: a chain file is a table with 'name' and 'services'")
    unknown = set(data) - CHAIN_KEYS
    if unknown:
        raise ConfigError(f"{origin}: unknown keys {sorted(unknown)}; known: {sorted(CHAIN_KEYS)}")
    name = data.get("name") or re.sub(r"[^a-z0-9_-]+", "-", Path(origin).stem.lower()).strip("-")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{origin}: 'name' {name!r} must match {NAME.pattern}")
    table = data.get("services")
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"{origin}: needs a 'services' table with one entry per service")
    external = data.get("external") or []
    if not isinstance(external, list) or not all(isinstance(a, str) for a in external):
        raise ConfigError(f"{origin}: 'external' is a list of addresses bound outside the chain")
    services = {key: _parse_service(origin, key, value) for key, value in table.items()}
    for service in services.values():
        for key in LINK_KEYS:
            for text in _as_list(service.config.get(key) or []):
                for ref in PLACEHOLDER.findall(text):
                    if ref not in services:
                        raise ConfigError(f"{origin}: [{service.name}] {key} {text!r} names "
                                          f"{{{ref}}}, which is not a service of this chain")
    chain = Chain(name, services, tuple(external), origin)
    chain.ends()  # every address must parse
    return chain


def _parse_service(origin: str, name: Any, value: Any) -> ChainService:
    where = f"{origin}: [services.{name}]"
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: service names must match {NAME.pattern}")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table of keys")
    role = value.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where}: 'role' must be one of {', '.join(ROLES)} (got {role!r})")
    config = {key: item for key, item in value.items() if key not in SERVICE_KEYS}
    unknown = set(config) - KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: "
                          f"{sorted(KEYS | SERVICE_KEYS)}")
    if config.setdefault("name", name) != name:
        raise ConfigError(f"{where}: 'name' is the table's name; leave it out")
    spec = ROLES[role]
    for key, wanted in (("in", spec.has_input), ("out", spec.has_output)):
        if key in config and not wanted:
            raise ConfigError(f"{where}: a {role} has no '{key}'")
        if wanted and not config.get(key):
            raise ConfigError(f"{where}: a {role} needs '{key}' (a ZeroMQ endpoint)")
    for key in LINK_KEYS:
        if key in config and not all(isinstance(v, str) for v in _as_list(config[key])):
            raise ConfigError(f"{where}: '{key}' must be an endpoint string"
                              + (" or a list of them" if key == "out" else ""))
    host = value.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: 'host' is the address other services reach it at")
    program = value.get("program") or {}
    if not isinstance(program, Mapping) or set(program) - PROGRAM_KEYS:
        raise ConfigError(f"{where}: 'program' holds supervisor program keys, one of "
                          f"{sorted(PROGRAM_KEYS)}")
    return ChainService(name, role, config, host, dict(program))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fill(text: str, hosts: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: hosts[m.group(1)], text)


def _split(address: str) -> tuple[str, str, str]:
    """('tcp', host, port) or (transport, path, '')."""
    transport, _, rest = address.partition("://")
    if transport == "tcp":
        host, _, port = rest.rpartition(":")
        return transport, host.strip("[]"), port
    return transport, rest, ""


LOCAL = {"127.0.0.1", "localhost", "::1"}


def _reaches(connect: str, bound: str, bound_host: str) -> bool:
    """Whether connecting to ``connect`` reaches a socket bound at ``bound`` by a service
    whose host is ``bound_host``."""
    c_transport, c_host, c_port = _split(connect)
    b_transport, b_host, b_port = _split(bound)
    if c_transport != b_transport:
        return False
    if c_transport != "tcp":
        return c_host == b_host  # ipc path / inproc name
    if c_port != b_port:
        return False
    if b_host in ("*", "0.0.0.0", "::"):
        return c_host == bound_host or (c_host in LOCAL and bound_host in LOCAL)
    return c_host == b_host or (c_host in LOCAL and b_host in LOCAL)


def _bind_place(address: str, host: str) -> tuple[str, str, str]:
    transport, bind_host, port = _split(address)
    if transport == "tcp" and (bind_host in ("*", "0.0.0.0", "::") or bind_host in LOCAL):
        bind_host = host
    return transport, bind_host, port
