"""Real DNS servers on loopback for the tests: dnslib's server (UDP and TCP) answering from a zone
dict, and a silent one that never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from {{ cookiecutter.package_name }}.devsmtp import free_port

Zone = Mapping[str, Sequence[tuple[str, str]]]
"""name -> [(type, value)]; type "SERVFAIL" makes every query for the name fail."""

_RDATA: dict[str, Any] = {
    "A": A,
    "AAAA": AAAA,
    "CNAME": CNAME,
    "MX": MX,
    "TXT": lambda value: TXT([value[start : start + 255] for start in range(0, len(value), 255)]),
}


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from `zone`; NXDOMAIN for a name it does not hold."""

    def __init__(self, zone: Zone) -> None:
        self.zone = {name.lower().rstrip("."): records for name, records in zone.items()}

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        wanted = QTYPE[request.q.qtype]
        records = self.zone.get(name)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif any(kind == "SERVFAIL" for kind, _ in records):
            reply.header.rcode = RCODE.SERVFAIL
        else:
            for kind, value in records:
                if kind == wanted or kind == "CNAME":
                    reply.add_answer(RR(name, getattr(QTYPE, kind), rdata=_RDATA[kind](value), ttl=60))
        return reply


class _Handler(DNSHandler):  # type: ignore[misc]
    udplen = 512  # a longer answer over UDP is truncated, as real servers do: the client retries over TCP


@contextmanager
def dns_server(zone: Zone) -> Iterator[str]:
    """Serve `zone` over UDP and TCP on one free loopback port; yields "127.0.0.1:port".

    Answers over 512 bytes come truncated over UDP, so they travel over TCP.
    """
    port = free_port()
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(ZoneResolver(zone), address="127.0.0.1", port=port, tcp=tcp, logger=quiet)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()


@contextmanager
def silent_dns_server() -> Iterator[str]:
    """A UDP socket that reads queries and never answers; yields "127.0.0.1:port"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sink.getsockname()[1]}"
