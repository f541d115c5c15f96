"""Secure by default: what a chain's services bind and how their links are protected.

Unless the chain file says ``insecure = true``, every way of running a chain (``arroyo
run``, generated supervisor programs, ``arroyo service``) applies these rules to the
addresses written in the file, for ZeroMQ tcp links between services of the chain:

- a link between two services on **one host** (the same ``host``; 127.0.0.1, localhost
  and ::1 are one) binds to loopback and connects over loopback;
- a link that **crosses hosts** keeps its addresses and is CURVE-encrypted: the binding
  side is the server with the connecting services' public keys as its allow-list, each
  connecting side a client with its own key pair (``KEYS/NAME.key`` and
  ``KEYS/NAME.key_secret``, made by :func:`ensure_keys`);
- a **status socket** on tcp binds to loopback (``arroyo status`` asks from its host).

Links whose ``in_options``/``out_options`` already hold ``curve_*`` keys (and the links
joined to them) are the user's and are left as written; so are ipc, inproc, shm and
redis links, links to ``external`` addresses, links to a plug-in's own address (a zmq
sink's ``address`` option) and binds no service of the chain connects to (those are
logged as a warning). Under docker compose the compose network is the one host
(containers cannot share a loopback), so nothing is rewritten there.

Settings of one side of a service (its ``in``, or all its ``out`` links) share one options
table, so the sides joined by links are decided together: if any link among them crosses
hosts, all of them use CURVE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from arroyo_core.address import Address
from arroyo_core.config import ServiceConfig
from arroyo_core.errors import ConfigError
from arroyo_core.transports.zmq.curve import PUBLIC_SUFFIX, SECRET_SUFFIX, generate_key_pair

from .chain import Chain, Target
from .chain_links import ANYWHERE, LOCAL, LinkEnd
from .workdir import home_of

CURVE_KEYS = ("curve_secret_key_file", "curve_allow", "curve_server_key_file")
Side = tuple[str, str]  # (service, "in" | "out")


def keys_dir(chain: Chain) -> Path:
    """Where the chain's key pairs are: its ``keys`` directory, from the chain file's."""
    return home_of(chain.origin) / chain.keys


def same_host(one: str, other: str) -> bool:
    return one == other or (one in LOCAL and other in LOCAL)


class _Sides:
    """The chain's tcp links, grouped: sides joined by links decide together (CURVE or
    loopback), and a group holding user-given curve options is left alone."""

    def __init__(self, chain: Chain) -> None:
        # a plug-in's own address (a zmq sink's, say) is not a setting this can rewrite
        self.links = [(seeker, bound) for seeker, bound in chain.links("hosts", plugins=False)
                      if seeker.meeting == "point" and seeker.address.scheme == "tcp"]
        self.parent: dict[Side, Side] = {}
        hosts = chain.hosts("hosts")
        crossing: set[Side] = set()
        for seeker, bound in self.links:
            a, b = self._find(_side(seeker)), self._find(_side(bound))
            self.parent[a] = b
            if not same_host(hosts[seeker.service], hosts[bound.service]):
                crossing.add(_side(seeker))
        user = {side for side in self.parent if _user_curve(chain, side)}
        self.curve = {self._find(side) for side in crossing}
        self.user = {self._find(side) for side in user}

    def _find(self, side: Side) -> Side:
        self.parent.setdefault(side, side)
        while self.parent[side] != side:
            side = self.parent[side]
        return side

    def mode(self, side: Side) -> str | None:
        """'curve', 'loopback', 'user' (as written), or None (no link of the chain)."""
        if side not in self.parent:
            return None
        root = self._find(side)
        return "user" if root in self.user else "curve" if root in self.curve else "loopback"

    def of(self, side: Side) -> list[tuple[LinkEnd, LinkEnd]]:
        return [(s, b) for s, b in self.links if side in (_side(s), _side(b))]


def _side(end: LinkEnd) -> Side:
    return end.service, end.key


def _user_curve(chain: Chain, side: Side) -> bool:
    options = chain.all_services()[side[0]].config[f"{side[1]}_options"]
    return any(key in options for key in CURVE_KEYS)


def keyed_services(chain: Chain) -> list[str]:
    """The services (of the selection ``chain``) that have a CURVE link: they need keys."""
    sides = _Sides(chain)
    return [name for name in chain.services
            if any(sides.mode((name, key)) == "curve" for key in ("in", "out"))]


def ensure_keys(chain: Chain) -> list[Path]:
    """Make the key pairs the services of ``chain`` (a selection, perhaps) lack: the
    first deploy makes them, later ones reuse them, none is ever overwritten. Returns the
    public key files made. Nothing for an insecure chain."""
    if chain.insecure:
        return []
    directory = keys_dir(chain)
    made = []
    for name in keyed_services(chain):
        public = directory / (name + PUBLIC_SUFFIX)
        secret = directory / (name + SECRET_SUFFIX)
        if public.exists() and secret.exists():
            continue
        if public.exists() or secret.exists():
            raise ConfigError(f"{chain.origin}: {public if public.exists() else secret} has "
                              "no other half; restore it, or remove it to make a new pair")
        made.append(generate_key_pair(name, directory)[0])
    return made


def secure_service(chain: Chain, name: str, config: ServiceConfig,
                   target: Target = "hosts") -> tuple[ServiceConfig, list[str], list[str]]:
    """``config`` (service ``name``, resolved) with the rules of the module docstring
    applied; also what to log about it: (config, info lines, warnings)."""
    if chain.insecure:
        return config, [], [
            f"chain {chain.name!r} is insecure (insecure = true in {chain.origin}): its "
            "links and status socket bind as written, without CURVE or loopback, so anyone "
            "who reaches them can read, inject and query (docs/security.md)"]
    if target == "compose":
        return config, ["links and status as written: the compose network is the one host "
                        "(containers share no loopback; docs/security.md)"], []
    sides = _Sides(chain)
    info: list[str] = []
    warnings: list[str] = []
    changed: dict[str, Any] = {}
    for key in ("in", "out"):
        mode = sides.mode((name, key))
        links = sides.of((name, key))
        if mode == "curve":
            options = _curve_options(chain, name, key, links)
            changed[f"{key}_options"] = {**config[f"{key}_options"], **options}
            role = "server" if "curve_allow" in options else "client"
            info.append(f"{key}: CURVE {role} (a link crosses hosts), key "
                        f"{options['curve_secret_key_file']}")
        elif mode == "loopback":
            ends = {end.address.text for pair in links for end in pair if end.service == name}
            texts = [_loopback(text, ends) for text in _as_list(config[key])]
            changed["in_" if key == "in" else key] = texts[0] if key == "in" else tuple(texts)
            info.append(f"{key}: on loopback (its peers are on this host)")
        warnings += _unpeered(chain, name, key, config, links)
    if config.status:
        status = _loopback(config.status, None)
        if status != config.status:
            changed["status"] = status
            info.append(f"status: on loopback ({status})")
    return replace(config, **changed), info, warnings


def _curve_options(chain: Chain, name: str, key: str,
                   links: list[tuple[LinkEnd, LinkEnd]]) -> dict[str, Any]:
    directory = keys_dir(chain)
    clients = sorted({s.service for s, b in links if b.service == name})
    servers = sorted({b.service for s, b in links if s.service == name})
    if clients and servers:
        raise ConfigError(f"[{name}] {key}: binds some links and connects others, which "
                          "share one options table; give its curve_* options yourself "
                          "(docs/security.md)")
    if len(servers) > 1:
        raise ConfigError(f"[{name}] {key}: connects to {servers}, which share one options "
                          "table; give its curve_* options yourself (docs/security.md)")
    needed = [directory / (name + SECRET_SUFFIX),
              *(directory / (peer + PUBLIC_SUFFIX) for peer in clients or servers)]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise ConfigError(
            f"[{name}] {key}: a link crosses hosts and needs CURVE keys; missing: "
            f"{', '.join(missing)}. Make the chain's keys with `arroyo keys chain "
            f"{chain.origin}` (arroyo run and arroyo deploy make them too), and copy each "
            "host's NAME.key_secret and every NAME.key to the other hosts (docs/security.md)")
    options: dict[str, Any] = {"curve_secret_key_file": str(needed[0])}
    if clients:
        options["curve_allow"] = [str(path) for path in needed[1:]]
    else:
        options["curve_server_key_file"] = str(needed[1])
    return options


def _loopback(text: str, ends: set[str] | None) -> str:
    """``text`` with its tcp host made loopback (if it is one of ``ends``, or any for None)."""
    prefix = text[0] if text[0] in "@>" else ""
    address = Address.parse(text, bind_by_default=True)
    if address.scheme != "tcp" or (ends is not None and address.text not in ends):
        return text
    loop = "[::1]" if address.host in ("::", "::1") else "127.0.0.1"
    if address.host in LOCAL and address.host != "localhost":
        return text
    return f"{prefix}tcp://{loop}:{address.port}"


def _unpeered(chain: Chain, name: str, key: str, config: ServiceConfig,
              links: list[tuple[LinkEnd, LinkEnd]]) -> list[str]:
    """A warning for each tcp bind of ``key`` that no service of the chain connects to."""
    linked = {end.address.text for pair in links for end in pair if end.service == name}
    warnings = []
    for text in _as_list(config[key]):
        address = Address.parse(text, bind_by_default=key != "in")
        if (address.bind and address.scheme == "tcp" and address.text not in linked
                and address.host not in LOCAL
                and not any(k in config[f"{key}_options"] for k in CURVE_KEYS)):
            where = "everywhere" if address.host in ANYWHERE else address.host
            warnings.append(f"{key} binds {address.text} ({where}) for peers outside the "
                            "chain, without CURVE: give it curve_* options (docs/security.md)")
    return warnings


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [
        value]
