"""A local Amazon SNS for tests: its HTTPS host with the signing certificate, and its signatures.

`running_sns(ca)` serves over real TLS on 127.0.0.1 a certificate for sns.us-east-1.amazonaws.com
issued by `ca`; the same certificate's RSA key signs messages (`SnsServer.sign`, versions 1 and 2,
over the canonical string written here from AWS's description, not taken from the code under test).
It answers the certificate's URL with its PEM and a ConfirmSubscription URL with 200, and records
every request. `SnsServer.client()` is an httpx client whose network backend connects that host (and
only it) to the server, so SNI, the certificate check and the host name are real.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HOST = "sns.us-east-1.amazonaws.com"
CERTIFICATE_PATH = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CANONICAL_FIELDS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ],
}


@dataclass
class SnsServer:
    port: int
    ca: trustme.CA
    key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)

    certificate_url = f"https://{HOST}{CERTIFICATE_PATH}"

    def client(self, *, trust_ca: bool = True) -> httpx.AsyncClient:
        """An httpx client reaching HOST:443 at this server; it trusts `ca` (or, if not, only the system CAs)."""
        context = ssl.create_default_context()
        if trust_ca:
            self.ca.configure_trust(context)
        transport = httpx.AsyncHTTPTransport(verify=context)
        # httpx takes no network backend; its transport is a thin layer over this httpcore pool.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, network_backend=Loopback(self.port)
        )
        return httpx.AsyncClient(transport=transport, timeout=5, trust_env=False)

    def notification(self, message: dict[str, Any], **fields: str) -> dict[str, str]:
        """An SNS Notification carrying `message` (SES event JSON), unsigned; `fields` override the envelope."""
        envelope = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(message),
            "Timestamp": iso_now(),
            "SignatureVersion": "1",
            "SigningCertURL": self.certificate_url,
            "UnsubscribeURL": f"https://{HOST}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:0f3c",
        }
        return envelope | fields

    def subscription_confirmation(self, **fields: str) -> dict[str, str]:
        token = uuid.uuid4().hex * 2  # SNS subscription tokens are long hex strings
        envelope = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, "
            "visit the SubscribeURL included in this message.",
            "SubscribeURL": f"https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
            "Timestamp": iso_now(),
            "SignatureVersion": "1",
            "SigningCertURL": self.certificate_url,
        }
        return envelope | fields

    def sign(
        self, envelope: dict[str, str], version: str = "1", key: rsa.RSAPrivateKey | None = None
    ) -> bytes:
        """`envelope` signed as SNS signs (SHA1withRSA for version 1, SHA256withRSA for 2), as the posted body."""
        signed = envelope | {"SignatureVersion": version}
        canonical = "".join(
            f"{name}\n{signed[name]}\n" for name in CANONICAL_FIELDS[signed["Type"]] if name in signed
        )
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS signature version 1 is SHA-1
        signature = (key or self.key).sign(canonical.encode(), padding.PKCS1v15(), digest)
        return json.dumps(signed | {"Signature": base64.b64encode(signature).decode()}).encode()


def iso_now(shift: float = 0) -> str:
    """Now (plus `shift` seconds) as SNS writes timestamps."""
    moment = datetime.fromtimestamp(datetime.now(UTC).timestamp() + shift, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Loopback(httpcore.AsyncNetworkBackend):
    """Connects HOST:443 to the local server; any other address fails, so no test reaches the network."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host, port) != (HOST, 443):
            raise httpcore.ConnectError(f"tests reach only {HOST}:443")
        return await self.inner.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@contextmanager
def running_sns(ca: trustme.CA) -> Iterator[SnsServer]:
    """SNS's host on a free loopback port, with an RSA certificate for HOST issued by `ca`."""
    leaf = ca.issue_cert(HOST, key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    certificate = leaf.cert_chain_pems[0].bytes()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    state = SnsServer(port=0, ca=ca, key=key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path == CERTIFICATE_PATH:
                status, body = 200, certificate
            elif self.path.startswith("/?Action=ConfirmSubscription&"):
                status, body = 200, b"<ConfirmSubscriptionResponse/>"
            else:
                status, body = 404, b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
