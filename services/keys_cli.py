"""``arroyo keys``: make the CURVE key pairs that secure links across machines."""

from __future__ import annotations

import sys

import click

from arroyo_core.errors import ConfigError
from arroyo_core.transports.zmq.curve import SECRET_SUFFIX, generate_key_pair, rotate_key_pair


@click.group()
def keys() -> None:
    """Make CURVE key pairs for encrypted, authenticated links (see docs/security.md)."""


@keys.command()
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Where to write the two files.")
def generate(name: str, directory: str) -> None:
    """Write NAME.key (public: give it to peers) and NAME.key_secret (secret: readable by
    you only, mode 0600; it never leaves this host). An existing pair is not overwritten."""
    try:
        public, secret = generate_key_pair(name, directory)
    except (ConfigError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"public key: {public}")
    click.echo(f"secret key: {secret} (mode 0600)")


@keys.command("chain")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", metavar="HOST", help="Only the services whose 'host' is HOST.")
def chain_keys(chain_file: str, host: str | None) -> None:
    """Make the key pairs of CHAIN_FILE's services that have a link crossing hosts, in the
    chain's keys directory (`keys = "..."`, default keys/ next to the chain file); existing
    pairs are kept. `arroyo run` and `arroyo deploy` do this too. List what each host
    needs: its services' NAME.key_secret and every NAME.key."""
    from .chain import load_chain
    from .chain_security import ensure_keys, keyed_services, keys_dir

    try:
        chain = load_chain(chain_file)
        chain = chain.select((), host) if host else chain
        made = ensure_keys(chain)
    except (ConfigError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if chain.insecure:
        click.echo(f"chain {chain.name!r} is insecure (insecure = true): no keys")
        return
    directory = keys_dir(chain)
    for public in made:
        click.echo(f"made {public} and its {SECRET_SUFFIX} (mode 0600)")
    names = keyed_services(chain)
    click.echo(f"keys of chain {chain.name!r} in {directory}: "
               f"{', '.join(names) or 'none (no link crosses hosts)'}")
    for name in names:
        click.echo(f"  host {chain.services[name].host}: {name}{SECRET_SUFFIX} (stays there)")


@keys.command()
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Where the pair is.")
def rotate(name: str, directory: str) -> None:
    """Replace NAME's key pair with a new one (the old one kept as NAME.key.old and
    NAME.key_secret.old). Running servers whose allow-list names NAME.key take the new key
    and drop the old one within seconds, closing its connections; restart NAME's service
    to use the new key (copy NAME.key_secret to its host first)."""
    try:
        public, secret = rotate_key_pair(name, directory)
    except (ConfigError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"public key: {public} (new)")
    click.echo(f"secret key: {secret} (new, mode 0600); the old pair: *.old")
