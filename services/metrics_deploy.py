"""Where a deployed chain's services serve their metrics, and the Prometheus scrape config
that reads them (``arroyo deploy prometheus``).

Generated supervisor programs and compose services turn metrics on
(:mod:`services.metrics`): a service's own ``metrics`` setting in the chain file wins;
otherwise, under supervisor, every worker of every service gets its own port from
``METRICS_PORT`` up, in chain order, on every interface; under compose, each service
on the same port as under supervisor (every worker of a pool, each in a container of its
own, on its service's first), found by Prometheus through the compose service's DNS name.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from arroyo_core.errors import ConfigError

from .chain import Chain, Target

METRICS_PORT = 9400
SCRAPE_INTERVAL_S = 5


def metrics_address(text: str, section: str) -> tuple[str, int]:
    """(host, port) of a ``metrics`` setting: ``HOST:PORT``, ``:PORT`` (every interface)
    or ``http://HOST:PORT``; port 0 lets the system choose. A ConfigError names the
    service and says what was expected."""
    parts = urlsplit(text if "//" in text else f"//{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("", "http") or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"[{section}] metrics: expected HOST:PORT or :PORT (e.g. "
                          f"127.0.0.1:9400), got {text!r}")
    return parts.hostname or "0.0.0.0", port


def nth_metrics(address: str, index: int) -> str:
    """The metrics address of worker ``index`` of a pool: its port + ``index`` (port 0
    stays 0)."""
    host, port = metrics_address(address, "metrics")
    if not port:
        return address
    return f"{'' if host == '0.0.0.0' else host}:{port + index}"


def default_ports(chain: Chain) -> dict[str, int]:
    """The first metrics port of each service under supervisor: one per worker, in chain
    order, from METRICS_PORT."""
    ports, port = {}, METRICS_PORT
    for name in chain.order():
        ports[name] = port
        port += chain.all_services()[name].replicas
    return ports


def deployed_metrics(chain: Chain, name: str, target: Target = "hosts") -> tuple[str, bool]:
    """(the metrics address of service ``name`` under ``target``, whether the chain file
    sets it). A pool's worker K adds K to the port (:func:`nth_metrics`)."""
    own = chain.all_services()[name].config.metrics
    if own:
        return own, True
    return f":{default_ports(chain)[name]}", False


def metrics_port(chain: Chain, name: str, target: Target = "hosts") -> int:
    """The port service ``name`` (its worker 0, of a pool) serves metrics on."""
    return metrics_address(deployed_metrics(chain, name, target)[0], name)[1]


def metrics_flag(chain: Chain, name: str, target: Target = "hosts") -> list[str]:
    """What a generated command adds to turn metrics on: ``--metrics ADDRESS``, unless
    the chain file sets the service's ``metrics`` (then the service reads it there)."""
    address, own = deployed_metrics(chain, name, target)
    return [] if own else ["--metrics", address]


def _targets(chain: Chain, name: str) -> list[str]:
    service = chain.all_services()[name]
    address, _ = deployed_metrics(chain, name)
    host, port = metrics_address(address, name)
    if not port:
        raise ConfigError(f"[{name}] metrics: port 0 is chosen at start; give the chain "
                          "file a fixed port for Prometheus to scrape")
    reach = service.host if host in ("0.0.0.0", "", "::") else host
    return [f"{reach}:{port + k}" for k in range(service.replicas)]


def _duration(seconds: float) -> str:
    """Prometheus's spelling of a duration: whole seconds, else milliseconds."""
    if seconds <= 0:
        raise ConfigError(f"a scrape interval must be above 0 s, got {seconds:g}")
    return f"{seconds:g}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def scrape_config(chain: Chain, target: Target = "hosts",
                  interval: float = SCRAPE_INTERVAL_S) -> str:
    """A Prometheus configuration that scrapes every service of ``chain``: one job named
    after the chain, a ``service`` label per target."""
    every = _duration(interval)
    job: dict[str, Any] = {"job_name": chain.name, "scrape_interval": every}
    if target == "compose":
        job["dns_sd_configs"] = [{"names": [name], "type": "A",
                                  "port": metrics_port(chain, name, "compose")}
                                 for name in chain.order()]
        job["relabel_configs"] = [{"source_labels": ["__meta_dns_name"],
                                   "target_label": "arroyo_service"}]
    else:
        job["static_configs"] = [{"targets": _targets(chain, name),
                                  "labels": {"arroyo_service": name}}
                                 for name in chain.order()]
    header = (f"# Prometheus scrape config for chain '{chain.name}' ({' -> '.join(chain.order())}),"
              f"\n# generated by `arroyo deploy prometheus`; `prometheus --config.file=THIS`.\n")
    return header + yaml.safe_dump({"global": {"scrape_interval": every},
                                    "scrape_configs": [job]}, sort_keys=False)
