"""Turns a chain into what runs it: supervisord ``[program:x]`` sections and a docker
compose file. Each service runs as ``arroyo service CHAIN_FILE NAME``
(:func:`services.chain.service_command`), so the chain file travels with what is generated.
Text only; nothing is started here."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from arroyo_core.address import Address

from .chain import Chain, service_command
from .chain_links import flows
from .metrics_deploy import metrics_flag, metrics_port

STOP_MARGIN_S = 5  # beyond drain_timeout (when unsent messages are abandoned): closing and exit
# ... more than services.serve.EXIT_MARGIN_S, so a service ends on its own before it is killed
STARTSECS = 3  # supervisor's startsecs for every generated program (see SUPERVISOR_WHY)
CONTAINER_DIR = "/etc/arroyo"  # where a compose service finds the chain file (mounted)


def stop_wait(chain: Chain, name: str) -> int:
    """Seconds a clean stop of ``name`` may take before it should be killed."""
    return math.ceil(chain.all_services()[name].drain_timeout) + STOP_MARGIN_S


def status_address(chain: Chain, name: str, replica: int | None = None) -> str | None:
    """Where ``arroyo status`` reaches the service (its worker ``replica``, of a pool) from
    its own host, if it has a status socket."""
    status = chain.resolve(name, replica=replica).status
    if not status:
        return None
    parsed = Address.parse(status, bind_by_default=True)
    if parsed.scheme == "tcp" and (parsed.host in ("*", "0.0.0.0") or not chain.insecure):
        loop = "[::1]" if parsed.host in ("::", "::1") else "127.0.0.1"
        return f"tcp://{loop}:{parsed.port}"  # (a secure chain's status is on loopback)
    return parsed.text


# --- supervisord ------------------------------------------------------------------------

# Why each key has the value it has; written above the key in the first program section.
SUPERVISOR_WHY = {
    "command": "The service runs in the foreground (it never daemonizes) and logs to stdout.",
    "numprocs": "A pool (replicas = N in the chain file): N worker processes of one program, "
                "each told its number (--replica), which names it NAME-K and offsets its "
                "status port by K.",
    "process_name": "Each worker of a pool is GROUP:NAME-K to supervisorctl.",
    "directory": "The chain file's directory, where the service runs whatever directory it is "
                 "started from: relative paths in the chain file (keys/..., directory = "
                 "\"runs\") are read there, and user code (operator = \"my_ops:Centroid\") "
                 "is imported from there first, as under `arroyo run`. The service puts that "
                 "directory on its import path itself, so environment needs no PYTHONPATH.",
    "priority": "Lower starts first. Services further down the chain get lower numbers, so a "
                "sink is listening before data is sent to it. Stopping needs no order: "
                "`supervisorctl stop all` (like supervisord's shutdown) signals a group's "
                "programs at once, and a service stopped mid-run finishes the run first, so "
                "nothing in flight is lost (see stopsignal).",
    "autostart": "Start with supervisord.",
    "autorestart": "Restart after a crash or kill -9 (an exit code not in exitcodes). A source "
                   "that finished its run exits 0 and stays EXITED instead of starting another "
                   "run; `supervisorctl start` runs it again.",
    "exitcodes": "0 is a clean end, never restarted. A service exits 1 when its source failed "
                 "and 2 when it is misconfigured (bad address, port in use, unknown plug-in), "
                 "which no restart mends: exit 2 comes before READY, within startsecs, where "
                 "supervisor ignores exitcodes (it counts a failed start, and after "
                 "startretries the program is FATAL); on a host so loaded that it came later, "
                 "2 here leaves the program EXITED instead of restarting it in a loop.",
    "startsecs": "supervisor has no readiness protocol: a program that exits within startsecs "
                 "counts as a failed start (retried after 1, 2, 3 s; FATAL after "
                 "startretries), one that exits later is restarted at once. Services print "
                 "READY once their sockets are open (0.3-0.4 s after the start on an idle "
                 "host) and a misconfigured one exits 2 before that, so a short startsecs "
                 "catches misconfiguration and lets a failing service end FATAL. A service "
                 "that ends cleanly sooner than startsecs stays up until then (a short run of "
                 "a source is never repeated); one killed after READY but within startsecs is "
                 "started again at once, never FATAL, when supervisord loads Arroyo's plug-in "
                 "([rpcinterface:arroyo] in deploy/supervisor/supervisord.conf; without it "
                 "supervisor backs off and may give up). RUNNING is only a label: data flows "
                 "from READY on.",
    "startretries": "Tries before FATAL for a service that exits within startsecs (back-off "
                    "1, 2, 3 s): FATAL means 'misconfigured or broken: read its log'.",
    "stdout_events_enabled": "Lets Arroyo's supervisord plug-in see the READY and EXIT lines "
                             "by which it tells a killed service from one that failed to "
                             "start (ignored without the plug-in).",
    "stopsignal": "SIGTERM drains: a source ends its run (Stop with frames_sent); a service fed "
                  "by another keeps receiving until that run's Stop has passed, sends what it "
                  "holds, and exits 0.",
    "stopwaitsecs": "The service's drain_timeout (after which unsent messages are given up, "
                    "and counted) plus 5 s to close and exit; a service exits within "
                    "drain_timeout + 3 s in any state, its final ledger logged. Only after "
                    "this does supervisor send SIGKILL, which loses what the service holds.",
    "stopasgroup": "Signal the whole process group, in case the command is wrapped in a script.",
    "killasgroup": "Same for SIGKILL, so no orphan keeps a port bound.",
    "redirect_stderr": "Error messages ('error: cannot bind ...') land in the same log as the "
                       "READY and progress lines.",
    "stdout_logfile": "AUTO: a file in supervisord's childlogdir (see `supervisorctl tail -f "
                      "GROUP:NAME`); --log-dir names the files instead.",
    "stdout_logfile_maxbytes": "Rotate the log at this size ...",
    "stdout_logfile_backups": "... keeping this many old ones.",
    "environment": "Unbuffered output, so log lines appear as they happen.",
}


def _supervisor_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f'{k}="{v}"' for k, v in value.items())
    return str(value)


def startsecs(chain: Chain, name: str) -> float:
    """The ``startsecs`` of service ``name``'s generated program (the chain file's wins)."""
    value = chain.all_services()[name].program.get("startsecs", STARTSECS)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(STARTSECS)


def supervisor_chain_path(chain: Chain) -> str:
    """The chain file's absolute path, as a supervisor value (``%`` escaped)."""
    return str(Path(chain.origin).resolve()).replace("%", "%%")


PROCESS_NUM = "%(process_num)d"  # supervisor's number of a program's process (numprocs)


def supervisor_command(chain_path: str, name: str, arroyo: str = "arroyo",
                       pool: bool = False, more: tuple[str, ...] = ()) -> str:
    """The ``command=`` that runs service ``name`` (each worker of it, ``pool``).
    ``chain_path`` is written as given, so supervisor expands ``%(here)s`` (the directory
    of the file the program is in) and ``%(ENV_X)s`` in it; everything else has its ``%``
    escaped."""
    words = [*shlex.split(arroyo), *service_command(chain_path, name)]
    command = " ".join(shlex.quote(word) if word == chain_path
                       else shlex.quote(word).replace("%", "%%") for word in words)
    command = f"{command} --replica {PROCESS_NUM}" if pool else command
    return " ".join([command, *(shlex.quote(word).replace("%", "%%") for word in more)])


def supervisor_program(chain: Chain, name: str, arroyo: str = "arroyo",
                       log_dir: str | None = None,
                       chain_path: str | None = None) -> dict[str, Any]:
    """The ``[program:name]`` keys for one service (the chain file's ``program`` wins).

    ``chain_path`` is where supervisord finds the chain file (default: its absolute path).
    """
    service = chain.all_services()[name]
    path = chain_path or supervisor_chain_path(chain)
    pool = service.replicas > 1
    keys: dict[str, Any] = {
        "command": supervisor_command(path, name, arroyo, pool,
                                      tuple(metrics_flag(chain, name))),
        "numprocs": service.replicas if pool else None,
        "process_name": f"%(program_name)s-{PROCESS_NUM}" if pool else None,
        "directory": supervisor_directory(path),
        "priority": 100 * (chain.depth()[name] + 1),
        "autostart": True,
        "autorestart": "unexpected",
        "exitcodes": "0,2",
        "startsecs": STARTSECS,
        "startretries": 3,
        "stdout_events_enabled": True,
        "stopsignal": "TERM",
        "stopwaitsecs": stop_wait(chain, name),
        "stopasgroup": True,
        "killasgroup": True,
        "redirect_stderr": True,
        "stdout_logfile": f"{log_dir.rstrip('/')}/{name}.log" if log_dir else "AUTO",
        "stdout_logfile_maxbytes": "50MB",
        "stdout_logfile_backups": 5,
        "environment": {"PYTHONUNBUFFERED": "1"},
    }
    keys.update(service.program)
    return {key: value for key, value in keys.items() if value is not None}


def supervisor_directory(chain_path: str) -> str | None:
    """The ``directory=`` of a program that reads the chain file at ``chain_path`` (as
    supervisor reads it: absolute, or from ``%(here)s``): the chain file's directory
    (:mod:`services.workdir`). None for a relative path, which supervisor would read
    against that directory once more."""
    if not chain_path.startswith(("/", "%(")):
        return None
    return str(PurePosixPath(chain_path).parent)


def supervisor_conf(chain: Chain, arroyo: str = "arroyo", log_dir: str | None = None,
                    source: str | None = None, chain_path: str | None = None) -> str:
    """A supervisord include file: a ``[group:CHAIN]`` and one ``[program:x]`` per service.

    It holds no ``[supervisord]`` section, so it drops into any supervisord's ``conf.d/``
    (deploy/supervisor/supervisord.conf includes ``conf.d/*.conf``). ``source`` is the
    chain file as named on the command line, ``chain_path`` as supervisord finds it.
    """
    names = chain.order()
    given = f" --chain-path {shlex.quote(chain_path)}" if chain_path else ""
    path = chain_path or supervisor_chain_path(chain)
    about = (f"Generated by `arroyo deploy supervisor {source or chain.origin}{given}`: change "
             "the chain file and generate again rather than editing this file. Each program "
             "runs `arroyo service CHAIN_FILE NAME`, which reads the service's settings from "
             f"the chain file at {path}.")
    lines = [
        f"; Chain '{chain.name}': {' -> '.join(names)}.",
        *(f"; {line}" for line in _wrap(about, 90)),
        f"; `supervisorctl start|stop|restart {chain.name}:*` acts on the whole chain,",
        f"; `supervisorctl tail -f {chain.name}:{names[-1]}` follows one service's log.",
        "",
        f"[group:{chain.name}]",
        f"programs={','.join(names)}",
    ]
    explained: set[str] = set()  # keys explained once, where they first appear
    for index, name in enumerate(names):
        service = chain.all_services()[name]
        lines += ["", f"[program:{name}]"]
        if index:
            lines.append(f"; The keys are explained in [program:{names[0]}] above.")
        for key, value in supervisor_program(chain, name, arroyo, log_dir, path).items():
            if key not in explained:
                explained.add(key)
                why = SUPERVISOR_WHY.get(key, "")
                if key in service.program:
                    why = "Set in the chain file. " + why
                lines += [f"; {line}" for line in _wrap(why, 90)]
            elif key in service.program:
                lines.append("; set in the chain file")
            lines.append(f"{key}={_supervisor_value(value)}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


# --- docker compose ---------------------------------------------------------------------

def compose_mount(chain_path: str) -> tuple[str, str]:
    """(volume, path of the chain file in the container) that mount the directory of the
    chain file at ``chain_path`` (relative to the compose file) read-only at CONTAINER_DIR,
    the services' working directory: user code next to the chain file comes along."""
    path = PurePosixPath(chain_path)
    host = str(path.parent)
    if not host.startswith((".", "/")):
        host = f"./{host}"
    return f"{host}:{CONTAINER_DIR}:ro", str(PurePosixPath(CONTAINER_DIR) / path.name)


def compose_file(chain: Chain, image: str = "arroyo-stream:local", context: str = ".",
                 dockerfile: str = "deploy/Dockerfile", source: str | None = None,
                 chain_path: str | None = None) -> str:
    """A docker compose file: one container per service, built from ``dockerfile``, that
    reach each other by service name (``{name}`` in the chain's addresses). Each runs
    ``arroyo service`` on the chain file, mounted from ``chain_path`` (relative to the
    compose file; default ``source``)."""
    volume, inside = compose_mount(chain_path or source or chain.origin)
    upstream_of: dict[str, set[str]] = {name: set() for name in chain.services}
    for up, down in flows(chain.links("compose")):
        if up in upstream_of and down in chain.services:
            upstream_of[up].add(down)
    services: dict[str, Any] = {}
    for name in chain.services:
        status = status_address(chain, name)
        entry: dict[str, Any] = {
            "image": image,
            "build": {"context": context, "dockerfile": dockerfile},
            "command": [*service_command(inside, name, "compose"),
                        *metrics_flag(chain, name, "compose")],
            "working_dir": CONTAINER_DIR,
            "volumes": [volume],
        }
        bound_ends = [end for end in chain.ends("compose")
                      if end.service == name and end.address.bind
                      and end.address.text.startswith("tcp://")]
        entry["expose"] = [*(end.address.text.rpartition(":")[2] for end in bound_ends),
                           str(metrics_port(chain, name, "compose"))]
        replicas = chain.services[name].replicas
        if replicas > 1:
            # A pool: N containers of one service, each a worker on its own network
            # namespace (so one status port each, not published: they would clash).
            entry["deploy"] = {"replicas": replicas}
        if status and status.startswith("tcp://"):
            port = status.rpartition(":")[2]
            if replicas == 1:
                entry["ports"] = [f"127.0.0.1:{port}:{port}"]
            entry["healthcheck"] = {
                "test": ["CMD", "arroyo", "status", "--timeout", "2", status],
                "interval": "5s", "timeout": "5s", "retries": 3, "start_period": "10s"}
        entry["init"] = True
        entry["stop_signal"] = "SIGTERM"
        entry["stop_grace_period"] = f"{stop_wait(chain, name)}s"
        entry["restart"] = "on-failure:3"
        if upstream_of[name]:
            entry["depends_on"] = {
                down: {"condition": "service_healthy" if status_address(chain, down)
                       else "service_started"} for down in sorted(upstream_of[name])}
        services[name] = entry
    header = [
        f"# Chain '{chain.name}' as containers: {' -> '.join(chain.order())}.",
        *(f"# {line}" for line in _wrap(
            f"Generated by `arroyo deploy compose {source or chain.origin}`: change the chain "
            "file and generate again rather than editing this file. Each container runs "
            f"`arroyo service {inside} NAME --target compose`: the chain file's directory is "
            f"mounted read-only ({volume}) as the working directory, so relative paths and "
            "user code next to the chain file (operator = \"my_ops:Centroid\") are found as "
            "on the host, and {name} in its addresses is the compose service name.", 90)),
        "#",
        "# `docker compose up --build` builds the image once (deploy/Dockerfile) and runs one",
        "# container per service. Services reach each other by service name on the compose",
        "# network; `expose` lists the ports each binds (metrics from 9400 up: `arroyo deploy",
        "# prometheus --target compose` scrapes them). Status ports are published on the",
        "# host's loopback only, so `arroyo status tcp://127.0.0.1:PORT` works from the host and",
        "# the healthcheck (`arroyo status` inside the container) says healthy once the service",
        "# has opened its sockets, and unhealthy while a run it counted lost frames (exit 3).",
        "# depends_on starts a service after the ones it feeds are healthy. stop_grace_period",
        "# is drain_timeout + 5 s, like supervisor's stopwaitsecs; init runs the service under",
        "# a small init process (docker-init, podman's catatonit) that passes signals on.",
        "# on-failure restarts a crashed service but not one that ended its run cleanly (0).",
        "# Security: the compose network is one host. Services link over it as the chain file",
        "# says, unencrypted (containers share no loopback); nothing outside reaches it but",
        "# the status ports, published on the host's 127.0.0.1 only (docs/security.md).",
        "",
    ]
    body = yaml.safe_dump({"name": chain.name, "services": services}, sort_keys=False,
                          default_flow_style=None, width=100)
    return "\n".join(header) + body
