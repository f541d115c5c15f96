"""Why a ZeroMQ link has no peer, or why a connection was refused, in words an operator can
act on: the texts a link logs and counts connections under (``connections.refused``)."""

from __future__ import annotations

import ipaddress
import socket as pysocket

import zmq

from ...address import Address

# Why a handshake failed, in words an operator can act on. libzmq gives the failed
# handshake's error code; these are the ones a misconfigured or hostile peer causes.
HANDSHAKE_REASONS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        "security mismatch (the peer does not use the same mechanism, e.g. no CURVE)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        "CURVE handshake could not be decrypted (the peer has a wrong server key)",
    zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: "CURVE key exchange failed",
}
AUTH_REASON = "client key refused by the allow-list"
# libzmq reports no failure for these: it just closes the connection and never retries it.
UNPAIRED_REASON = ("closed before its handshake completed: the peer's socket type does not "
                   "pair with ours (e.g. PULL to PULL), or the connection reached itself (TCP "
                   "connected a port to itself while nothing listened there yet)")
# A socket type that pairs with itself (DEALER) would talk to itself: closed at once.
SELF_REASON = ("connected to itself (TCP gave the connection the very port it connects to, "
               "as nothing listened there yet); closed")
PROTOCOL_ERRORS = {value: name for name, value in vars(zmq).items()
                   if name.startswith("PROTOCOL_ERROR_") and isinstance(value, int)}


def _unresolved(host: str) -> str | None:
    """Why host name ``host`` does not resolve, or None if it does (or is an address)."""
    if not host or host == "*":
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        pysocket.getaddrinfo(host, None)
    except (pysocket.gaierror, UnicodeError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    return None


def no_peer_reason(address: Address) -> str:
    """Why a link at ``address`` has no peer, as far as this side can tell, for a log line."""
    if address.bind:
        return f"nothing has connected to {address.base} yet"
    unresolved = _unresolved(address.host)
    if unresolved:
        return (f"host name {address.host!r} does not resolve ({unresolved}); ZeroMQ keeps "
                "trying")
    return (f"nothing accepts connections at {address.base} yet (is the service that binds "
            "it running?); ZeroMQ keeps trying")
