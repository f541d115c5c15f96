"""A chain file describes every service of one chain, so that one file drives every way of
running it (all in the foreground, under supervisor, as containers, across hosts).

A chain file is TOML or YAML::

    name = "arroyo"                      # the supervisor group and the compose project

    [services.source]                    # one service; its name is the table's name
    role = "listener"                    # listener | operator | publisher
    source = "simulated"                 # then the service's settings (ServiceConfig keys)
    options = {frames = 1000, rate = 50}
    out = "@tcp://*:5555"
    status = "tcp://*:6000"

    [services.operator]
    role = "operator"
    host = "10.0.0.2"                    # where the other services reach it [127.0.0.1]
    in = ">tcp://{source}:5555"          # {source} stands for the host of service 'source'
    out = "@tcp://*:5556"

    [services.operator.program]          # supervisor [program:operator] keys to set
    startsecs = 5

``reliable = true`` at the top level makes every link of the chain reliable (each
service's ``in_options`` and ``out_options`` get ``reliable = true`` unless they set it):
nothing is lost when a stage crashes (docs/reliability.md section 6).

A service with ``replicas = N`` is a pool of N worker processes (docs/pools.md): its input
defaults to ``in_pattern = "worker"``, the service that feeds it to ``out_pattern =
"dispatch"`` waiting for N workers (``peers``), and replica K of it
(``arroyo service CHAIN NAME --replica K``) is named ``NAME-K`` and has its status socket
at the service's port + K (or ``PATH-K`` for ipc), so the workers of one host do not clash.

``{name}`` in an address is the named service's ``host`` when services run on hosts
(``arroyo run``, supervisor, several machines) and its service name under docker compose,
so the same file serves both. Each service runs as ``arroyo service CHAIN_FILE NAME``
(:func:`service_command`), which reads its settings from the file itself and runs in the
file's directory, where it finds user code and relative paths (:mod:`services.workdir`).
Everything here is plain data: nothing is opened or started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from arroyo_core import registry
from arroyo_core.address import Address
from arroyo_core.config import ROLES, ServiceConfig, load_config, settings
from arroyo_core.errors import ConfigError
from arroyo_core.link import InputLink, OutputLink

from . import chain_links
from .chain_links import LinkEnd

Target = Literal["hosts", "compose"]
TARGETS: tuple[Target, ...] = ("hosts", "compose")

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # valid as a supervisor program and a DNS name
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
CHAIN_KEYS = {"name", "services", "external", "insecure", "keys", "reliable"}
SERVICE_KEYS = {"role", "host", "program"}  # the rest of a service's table: its settings
# Settings that hold addresses, by key and field name: where {name} placeholders go.
LINK_FIELDS = {key: item.name for key, setting, item in settings()
               if setting.kind in ("address", "addresses", "inputs")}
# The supervisor [program:x] keys a chain file may set (supervisord's own spelling).
PROGRAM_KEYS = {
    "command", "directory", "umask", "priority", "autostart", "autorestart", "startsecs",
    "startretries", "exitcodes", "stopsignal", "stopwaitsecs", "stopasgroup", "killasgroup",
    "user", "redirect_stderr", "stdout_logfile", "stdout_logfile_maxbytes",
    "stdout_logfile_backups", "stderr_logfile", "stderr_logfile_maxbytes",
    "stderr_logfile_backups", "environment", "stdout_events_enabled",
}
DEFAULT_HOST = "127.0.0.1"


def service_command(chain_file: str | Path, name: str, target: Target = "hosts",
                    replica: int | str | None = None) -> list[str]:
    """``arroyo`` arguments that run service ``name`` of ``chain_file`` (worker ``replica``
    of a pool): what ``arroyo run`` starts, ``arroyo check`` checks, and supervisor and
    compose run."""
    return ["service", str(chain_file), name, *(["--target", target] if target != "hosts"
                                                 else []),
            *(["--replica", str(replica)] if replica is not None else [])]


@dataclass(frozen=True)
class ChainService:
    """One service of a chain: its settings (addresses may hold ``{name}`` placeholders),
    the host others reach it at, and supervisor settings."""

    name: str
    config: ServiceConfig
    host: str = DEFAULT_HOST
    program: Mapping[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.config.role

    @property
    def drain_timeout(self) -> float:
        return self.config.drain_timeout

    @property
    def replicas(self) -> int:
        return self.config.replicas


@dataclass(frozen=True)
class Chain:
    """The services of one chain, in the order of the file."""

    name: str
    services: dict[str, ChainService]
    external: tuple[str, ...] = ()
    origin: str = "<chain>"
    insecure: bool = False  # links as written: no CURVE, no loopback (services.chain_security)
    keys: str = "keys"  # the CURVE key pairs' directory, relative to the chain file's

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
        return _Selection(self.name, kept, self.external, self.origin, self.insecure,
                          self.keys, self.services)

    def hosts(self, target: Target = "hosts") -> dict[str, str]:
        """What ``{name}`` stands for: each service's host, or its compose service name."""
        every = self.all_services()
        if target == "compose":
            return {name: name for name in every}
        return {name: svc.host for name, svc in every.items()}

    def all_services(self) -> dict[str, ChainService]:
        return self.services

    def resolve(self, name: str, target: Target = "hosts",
                replica: int | None = None) -> ServiceConfig:
        """The settings of service ``name`` with its placeholders filled in and a pool's
        defaults set (of its worker ``replica``, if given: see the module docstring)."""
        config = self.all_services()[name].config
        hosts = self.hosts(target)
        filled: dict[str, Any] = {}
        for key, field_name in LINK_FIELDS.items():
            value = config[key]
            if value:
                filled[field_name] = (
                    tuple(_fill(v, hosts) for v in value) if isinstance(value, tuple)
                    else {k: _fill(v, hosts) for k, v in value.items()}
                    if isinstance(value, Mapping) else _fill(value, hosts))
        if config.replicas > 1 and not config.in_pattern:
            filled["in_pattern"] = "worker"
        workers = self.feeds_pool(target).get(name)
        if workers:
            if not config.out_pattern:
                filled["out_pattern"] = "dispatch"
            if (config.out_pattern or "dispatch") == "dispatch":
                filled["out_options"] = {"peers": workers, **config.out_options}
        if replica is not None and config.replicas > 1:
            if not 0 <= replica < config.replicas:
                raise ConfigError(f"{self.origin}: [{name}] has replicas {config.replicas}: "
                                  f"--replica must be 0 to {config.replicas - 1}")
            filled["name"] = f"{config.name or name}-{replica}"
            if filled.get("status"):
                filled["status"] = chain_links.nth_address(filled["status"], replica)
            if config.metrics:
                from .metrics_deploy import nth_metrics

                filled["metrics"] = nth_metrics(config.metrics, replica)
        return replace(config, **filled)

    def feeds_pool(self, target: Target = "hosts") -> dict[str, int]:
        """Services whose output a pool's workers connect to, and how many workers."""
        hosts = self.hosts(target)
        every = self.all_services()
        binds = [(name, Address.parse(_fill(text, hosts), True))
                 for name, svc in every.items() for text in svc.config.out]
        found: dict[str, int] = {}
        for name, svc in every.items():
            if svc.replicas < 2 or not isinstance(svc.config.in_, str):
                continue
            wanted = Address.parse(_fill(svc.config.in_, hosts), False)
            for feeder, bound in binds:
                if feeder != name and bound.bind and not wanted.bind and chain_links.reaches(
                        wanted, bound, hosts[feeder]):
                    found[feeder] = found.get(feeder, 0) + svc.replicas
        return found

    def ends(self, target: Target = "hosts", plugins: bool = True) -> list[LinkEnd]:
        """Every address of every service (data links and status sockets; and the
        addresses of plug-ins that are links themselves, unless not ``plugins``)."""
        ends = []
        for name, service in self.all_services().items():
            config = self.resolve(name, target)
            for key in LINK_FIELDS:
                raw = service.config[key]
                if not raw:
                    continue
                pattern = {"in": config.in_pattern or "pull",
                           "out": config.out_pattern or "push"}.get(key, "rep")
                options = config[f"{key}_options"] if key in ("in", "out") else {}
                for raw_one, text in zip(_as_list(raw), _as_list(config[key]), strict=True):
                    match = PLACEHOLDER.search(raw_one)
                    try:
                        address = Address.parse(text, key != "in")
                    except ConfigError as exc:
                        raise ConfigError(f"{self.origin}: [{name}] {key}: {exc}") from None
                    ends.append(LinkEnd(name, key, address, pattern,
                                        match.group(1) if match else None,
                                        chain_links.broker_place(address, options)))
            if plugins:
                ends += _plugin_ends(name, config)
        return ends

    def links(self, target: Target = "hosts",
              plugins: bool = True) -> list[tuple[LinkEnd, LinkEnd]]:
        """(seeking end, end it finds) for every connection inside the chain: a connect and
        the bind it reaches, or a broker reader and a writer (:mod:`services.chain_links`)."""
        return chain_links.pairs(self.ends(target, plugins), self.hosts(target))

    def problems(self) -> list[str]:
        """What is wrong with the links: a connect that no service binds (or not the
        service it names), mismatched patterns, two binds of one address, a stream or
        channel that no service writes."""
        return [*chain_links.problems(self.ends(), self.hosts(), self.external),
                *chain_links.pool_problems(self.ends(), {
                    name: svc.replicas for name, svc in self.services.items()})]

    def order(self) -> list[str]:
        """Service names, upstream first (the file's order among equals)."""
        depth = self.depth()
        return sorted(self.services, key=lambda name: -depth[name])

    def depth(self) -> dict[str, int]:
        """Hops from each service to the end of the chain (0 for sinks): start the deepest
        last and stop it first, so nothing waits on a peer that is not there yet."""
        every = list(self.all_services())
        downstream: dict[str, set[str]] = {name: set() for name in every}
        for up, down in chain_links.flows(self.links()):
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
    insecure, keys = data.get("insecure", False), data.get("keys", "keys")
    if not isinstance(insecure, bool):
        raise ConfigError(f"{origin}: 'insecure' is true or false (true: links as written, "
                          "without CURVE or loopback; docs/security.md)")
    if not isinstance(keys, str) or not keys:
        raise ConfigError(f"{origin}: 'keys' is the directory of the chain's CURVE keys")
    reliable = data.get("reliable", False)
    if not isinstance(reliable, bool):
        raise ConfigError(f"{origin}: 'reliable' is true or false (every link of the chain "
                          "reliable: docs/reliability.md section 6)")
    services = {key: _parse_service(origin, key, value, reliable)
                for key, value in table.items()}
    for service in services.values():
        for key in LINK_FIELDS:
            for text in _as_list(service.config[key] or []):
                for ref in PLACEHOLDER.findall(text):
                    if ref not in services:
                        raise ConfigError(f"{origin}: [{service.name}] {key} {text!r} names "
                                          f"{{{ref}}}, which is not a service of this chain")
    chain = Chain(name, services, tuple(external), origin, insecure, keys)
    chain.ends()  # every address must parse
    return chain


def _parse_service(origin: str, name: Any, value: Any, reliable: bool = False,
                   ) -> ChainService:
    where = f"{origin}: [services.{name}]"
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where} service names must match {NAME.pattern}")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of keys")
    role = value.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where} 'role' must be one of {', '.join(ROLES)} (got {role!r})")
    given = {key: item for key, item in value.items() if key not in SERVICE_KEYS}
    if reliable:  # the chain's key: every link of every service, unless one says otherwise
        for key, wanted in (("in", ROLES[role].has_input), ("out", ROLES[role].has_output)):
            options = given.get(f"{key}_options")
            if wanted and (options is None or isinstance(options, Mapping)):
                given[f"{key}_options"] = {"reliable": True, **(options or {})}
    if given.setdefault("name", name) != name:
        raise ConfigError(f"{where} 'name' is the table's name; leave it out")
    config = ServiceConfig.from_mapping(role, given, where, also=SERVICE_KEYS)
    spec = ROLES[role]
    for key, wanted in (("in", spec.has_input), ("out", spec.has_output)):
        if wanted and not config[key]:
            raise ConfigError(f"{where} a {role} needs '{key}' (an address)")
    host = value.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where} 'host' is the address other services reach it at")
    program = value.get("program") or {}
    if not isinstance(program, Mapping) or set(program) - PROGRAM_KEYS:
        raise ConfigError(f"{where} 'program' holds supervisor program keys, one of "
                          f"{sorted(PROGRAM_KEYS)}")
    return ChainService(name, config, host, dict(program))


def _plugin_ends(name: str, config: ServiceConfig) -> list[LinkEnd]:
    """The end of a source or sink plug-in that is itself a link (``--sink zmq -o
    address=@tcp://*:5560``, ``redis-stream``...): it binds or connects its own address,
    which other services of the chain may reach. Nothing is opened; a plug-in that cannot
    be made here is left to the service's own check, which says why."""
    spec = ROLES[config.role]
    plugin = config[spec.plugin_key]
    try:
        factory = registry.resolve(spec.plugin_kind, plugin) if plugin else None
    except ConfigError:
        return []
    if not isinstance(factory, type) or not issubclass(factory, (InputLink, OutputLink)):
        return []
    try:
        link = factory(**config.options)
    except Exception:  # any error of a plug-in is for its own check to report
        return []
    output = isinstance(link, OutputLink)
    end = link.sender if isinstance(link, OutputLink) else link.receiver
    pattern = getattr(end, "pattern", None) or ("push" if output else "pull")
    options = {key: value for key, value in config.options.items() if key != "address"}
    return [LinkEnd(name, "out" if output else "in", link.address, str(pattern), None,
                    chain_links.broker_place(link.address, options))]


def _as_list(value: Any) -> list[Any]:
    """One address or many (a list, or an event builder's table of streams) as a list."""
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fill(text: str, hosts: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: hosts[m.group(1)], text)
