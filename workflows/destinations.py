"""Where outbound webhooks may go: public Internet addresses only (server-side request
forgery, Standard Webhooks "SSRF").

Whoever registers an endpoint chooses a URL the server will POST to; without this check it
could be the cloud's metadata service (169.254.169.254), a database on the private network, or
this computer itself. A URL is checked when it is registered (`workflows.webhooks.check_url`:
its host as written, and what it resolves to then) and again at every delivery
(`bot.webhooks_out`) on the addresses the name resolves to at that moment; the delivery then
connects to the address it checked, so a name re-pointed between the check and the connection
(DNS rebinding) cannot reach inside. Every resolution has a deadline: a resolver that hangs
holds a daemon thread, never the caller.

A host is refused when it is, or any of its addresses is, a loopback, private, link-local,
multicast, reserved, unspecified or otherwise non-public address (IPv4 and IPv6; an IPv6
address carrying an IPv4 one — IPv4-mapped, 6to4, NAT64 — is judged by the IPv4 one). The
names `localhost` and `*.localhost` are refused without asking DNS (RFC 6761). The setting
`O2C_WEBHOOKS_ALLOW_PRIVATE=1` (`allow_private`) lifts all this for a developer's local
receiver; it is off unless set.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOW_SETTING = "O2C_WEBHOOKS_ALLOW_PRIVATE"
REGISTRATION_TIMEOUT = 5.0  # seconds to resolve a name when an endpoint is registered


class Refused(Exception):
    """The destination is not a public address; the message says which and why."""


class Unresolved(Exception):
    """The name did not resolve (`timed_out`: not within the deadline)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def literal(host: str) -> IPAddress | None:
    """The address when `host` is written as one (`[::1]`'s brackets already removed)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone id is no address
    except ValueError:
        return None


def judged(address: IPAddress) -> IPAddress:
    """The address a connection really reaches: the IPv4 one inside an IPv4-mapped, 6to4 or
    NAT64 IPv6 address, else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            return embedded
    return address


def kind_of(address: IPAddress) -> str | None:
    """Why deliveries may not go to `address` ("a loopback address", ...), or None when it
    is a public one (`address` as `judged`)."""
    for kind, test in (("an unspecified", address.is_unspecified),
                       ("a loopback", address.is_loopback),
                       ("a link-local", address.is_link_local),
                       ("a multicast", address.is_multicast),
                       ("a reserved", address.is_reserved),
                       ("a private", address.is_private)):
        if test:
            return f"{kind} address"
    return None if address.is_global else "not a public address"


def _refuse(what: str) -> Refused:
    return Refused(f"{what}; webhooks go to public addresses only ({ALLOW_SETTING}=1 allows "
                   "private ones, for a local receiver)")


def check_host(host: str) -> None:
    """Refuse a host that is private as written: an address, or a `localhost` name."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise _refuse(f"{host} is a loopback name")
    address = literal(host)
    if address is not None and (kind := kind_of(judged(address))) is not None:
        raise _refuse(f"{judged(address)} is {kind}")


def check_addresses(host: str, addresses: list[str]) -> None:
    """Refuse when any address `host` resolved to is not a public one."""
    for text in addresses:
        address = literal(text)
        if address is None:
            raise _refuse(f"{host} resolves to {text}, not an IP address")
        if (kind := kind_of(judged(address))) is not None:
            raise _refuse(f"{host} resolves to {judged(address)}, {kind}")


def resolve(host: str, port: int, *, timeout: float) -> list[str]:
    """The addresses `host` resolves to (in the resolver's order, once each), within
    `timeout` seconds. `socket.getaddrinfo` runs in a daemon thread: when it hangs, the
    caller goes on at the deadline (Unresolved, timed out) and the thread ends whenever the
    resolver answers."""
    address = literal(host)
    if address is not None:
        return [str(address)]
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["found"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}"[:60], daemon=True).start()
    if not done.wait(max(timeout, 0.0)):
        raise Unresolved(f"no answer from DNS for {host} within {timeout:g} s",
                         timed_out=True)
    if "error" in outcome:
        raise Unresolved(f"{host} does not resolve: {outcome['error']}")
    found = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0]
                               for info in outcome["found"]))
    if not found:
        raise Unresolved(f"{host} does not resolve")
    return found


def checked(host: str, port: int, *, allow_private: bool, timeout: float) -> list[str]:
    """The addresses to connect to for `host`: resolved within `timeout`, every one public
    unless `allow_private` (else Refused)."""
    if not allow_private:
        check_host(host)
    addresses = resolve(host, port, timeout=timeout)
    if not allow_private:
        check_addresses(host, addresses)
    return addresses
