"""Who a request comes from: the client's address, and the admin's login throttle.

`X-Forwarded-For` is read only when the peer is one of `CHATMODELS_TRUSTED_PROXIES` (addresses
or networks): the client is then the last address in it that is not itself a trusted proxy.
Anyone else could write any address there, so for everyone else the peer address is the client.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from chatmodels import limits

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(meta: Mapping[str, Any]) -> str:
    """The address of the client behind the request whose `META` this is."""
    peer = meta.get("REMOTE_ADDR") or ""
    networks = _networks(tuple(settings.CHATMODELS_TRUSTED_PROXIES))
    if not networks or not _within(peer, networks):
        return peer
    forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    for address in reversed(forwarded):
        if not _within(address, networks):
            return address
    return forwarded[0] if forwarded else peer


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def subject(kind: str, value: str) -> str:
    """A limits-store subject for `value` (hashed: a fixed length, nothing personal stored)."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def login_wait(meta: Mapping[str, Any], username: str) -> tuple[float, str]:
    """Count one admin login attempt from this client and for this username; the seconds to
    wait and what is throttled ("" and 0 when it may go ahead)."""
    limit = settings.CHATMODELS_LOGIN_ATTEMPTS_PER_MINUTE
    if not limit:
        return 0.0, ""
    wait = limits.count_request(subject("login:ip", client_address(meta)), limit=limit, period=60)
    if wait:
        return wait, "from this address"
    wait = limits.count_request(
        subject("login:user", username.strip().lower()), limit=limit, period=60
    )
    return (wait, "for this username") if wait else (0.0, "")
