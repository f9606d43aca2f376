"""Bounded DNS look-ups (dnspython): None for what does not exist, `DnsLookupError` when nobody answered.

After one timeout the remaining look-ups fail at once, so a check stays bounded. The resolver is
the system's, or MAIL_DNS_SERVER (`host` or `host:port`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import dns.exception
import dns.resolver

__all__ = ["DNS_TIMEOUT", "Dns", "DnsLookupError"]

DNS_TIMEOUT = 5.0
"""Seconds allowed for one lookup (MAIL_TIMEOUT when it is shorter)."""


class DnsLookupError(Exception):
    """A lookup that got no usable answer: the record's state is unknown."""


class Dns:
    """Bounded lookups; None for a name or record that does not exist."""

    def __init__(self, server: str = "", timeout: float = DNS_TIMEOUT) -> None:
        if server:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "53")
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = int(port)
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        self._dead = ""

    def lookup(self, name: str, kind: str) -> list[Any] | None:
        """The records of type `kind` at `name`; None when there are none; raises `DnsLookupError`."""
        if self._dead:
            raise DnsLookupError(self._dead)
        try:
            return list(self._resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.Timeout:
            self._dead = f"the resolver did not answer within {self._resolver.lifetime:g} s"
            raise DnsLookupError(f"looking up {kind} {name}: {self._dead}") from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException) as error:
            raise DnsLookupError(f"looking up {kind} {name} failed ({type(error).__name__})") from None

    def txt(self, name: str) -> list[str]:
        """The TXT strings at `name` (each record's strings joined), empty when there are none."""
        return [
            b"".join(record.strings).decode("utf-8", "replace") for record in self.lookup(name, "TXT") or []
        ]

    def addresses(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The A and AAAA addresses of `name`."""
        found = [ipaddress.ip_address(record.address) for record in self.lookup(name, "A") or []]
        return found + [ipaddress.ip_address(record.address) for record in self.lookup(name, "AAAA") or []]
