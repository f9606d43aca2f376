"""Real OAuth2 parts for tests: a token endpoint on loopback and an SMTP server that takes only its tokens.

`TokenEndpoint` is an HTTP server speaking the token protocol as Microsoft's identity platform
and Google's OAuth2 server do: client credentials with a client secret (form or Basic) or a
certificate-signed client assertion (with `x5t`), the JWT-bearer grant of a Google service
account (signed with the key file's private key, `sub` = the mailbox), and the refresh-token
grant. It issues random tokens that expire after `lifetime` seconds and counts the requests. Given a
server TLS context it speaks HTTPS (`https://localhost:<port>`), as real endpoints do.
`running_oauth_smtp` is a STARTTLS server that offers only `AUTH XOAUTH2` and accepts a token
only if the endpoint issued it for that user and it has not expired or been revoked.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from authlib.jose import JoseError, jwt  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from {{ cookiecutter.package_name }}.devsmtp import PasswordAuthenticator, free_port, server_tls_context

from .smtp_server import FaultyHandler, SmtpServer

MAILBOX = "mailer@example.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "Zq8~test-client-secret-" + secrets.token_hex(8)
REFRESH_TOKEN = "1//test-refresh-token-" + secrets.token_hex(8)
TENANT = "contoso.onmicrosoft.com"
SERVICE_ACCOUNT = "mailer@project.iam.gserviceaccount.com"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Issued:
    user: str
    expires: float


@dataclass
class TokenEndpoint:
    """The endpoint's state; `url` is its base (`{url}/{tenant}/oauth2/v2.0/token`, `{url}/token`)."""

    url: str = ""
    lifetime: float = 3600.0
    delay: float = 0.0
    delegated: set[str] = field(default_factory=lambda: {MAILBOX})
    requests: list[str] = field(default_factory=list)
    issued: dict[str, Issued] = field(default_factory=dict)
    certificate_key: rsa.RSAPrivateKey = field(default_factory=_private_key)
    service_account_key: rsa.RSAPrivateKey = field(default_factory=_private_key)
    thumbprint: str = ""
    roles: list[str] | None = None  # set: issue JWT-shaped tokens carrying these app roles (Microsoft)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def microsoft_url(self) -> str:
        return f"{self.url}/{TENANT}/oauth2/v2.0/token"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def accepts(self, token: str, user: str) -> bool:
        """True if this endpoint issued `token` for `user` and it has not expired or been revoked."""
        with self.lock:
            issued = self.issued.get(token)
        return issued is not None and issued.user == user and time.monotonic() < issued.expires

    def revoke_tokens(self) -> None:
        with self.lock:
            self.issued.clear()

    def tokens(self) -> list[str]:
        with self.lock:
            return list(self.issued)

    # -- key material a client needs ----------------------------------------------------------

    def write_certificate(self, path: Path) -> Path:
        """A PEM file with the app's self-signed certificate and its private key (Microsoft)."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailer app")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.certificate_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.certificate_key, hashes.SHA256())
        )
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + _pem(self.certificate_key))
        thumbprint = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition
        self.thumbprint = base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
        return path

    def write_service_account(self, path: Path) -> Path:
        """A Google service account JSON key whose token_uri is this endpoint."""
        key = {
            "type": "service_account",
            "project_id": "project",
            "private_key_id": "0123456789abcdef",
            "private_key": _pem(self.service_account_key).decode(),
            "client_email": SERVICE_ACCOUNT,
            "client_id": "109876543210",
            "token_uri": self.token_url,
        }
        path.write_text(json.dumps(key))
        return path

    # -- the token protocol --------------------------------------------------------------------

    def answer(self, path: str, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one token request."""
        grant = form.get("grant_type", "")
        with self.lock:
            self.requests.append(grant)
        if grant == "client_credentials":
            return self._client_credentials(path, form, authorization)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form)
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return _error(401, "invalid_client", "The OAuth client was not found.")
            if form.get("refresh_token") != REFRESH_TOKEN:
                return _error(400, "invalid_grant", "Token has been expired or revoked.")
            return self._issue(MAILBOX)
        return _error(400, "unsupported_grant_type", grant)

    def _client_credentials(
        self, path: str, form: dict[str, str], authorization: str
    ) -> tuple[int, dict[str, Any]]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if "client_assertion" in form:
            url = self.microsoft_url if path.endswith("/oauth2/v2.0/token") else self.token_url
            if not self._valid_client_assertion(form["client_assertion"], url):
                return _error(
                    401, "invalid_client", "AADSTS700027: Client assertion contains an invalid signature."
                )
        elif (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if path.endswith("/oauth2/v2.0/token") and form.get("scope") != MICROSOFT_SCOPE:
            return _error(400, "invalid_scope", "AADSTS70011: The provided scope is not valid.")
        return self._issue(MAILBOX)

    def _valid_client_assertion(self, assertion: str, audience: str) -> bool:
        try:
            claims = jwt.decode(assertion, _public_pem(self.certificate_key))
            claims.validate()
        except (JoseError, ValueError):
            return False
        return bool(
            claims.header.get("x5t") == self.thumbprint
            and claims["iss"] == claims["sub"] == CLIENT_ID
            and claims["aud"] == audience
        )

    def _jwt_bearer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            claims = jwt.decode(form.get("assertion", ""), _public_pem(self.service_account_key))
            claims.validate()
        except (JoseError, ValueError):
            return _error(400, "invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != SERVICE_ACCOUNT or claims.get("aud") != self.token_url:
            return _error(400, "invalid_grant", "Invalid JWT: iss or aud.")
        if claims.get("scope") != GOOGLE_SCOPE or claims.get("sub") not in self.delegated:
            return _error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method.",
            )
        return self._issue(str(claims["sub"]))

    def _issue(self, user: str) -> tuple[int, dict[str, Any]]:
        token = "ya29." + secrets.token_urlsafe(24)
        if self.roles is not None:
            parts = (
                {"alg": "RS256", "typ": "JWT"},
                {"aud": "https://outlook.office.com", "roles": self.roles},
            )
            encoded = (
                base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode() for part in parts
            )
            token = ".".join((*encoded, secrets.token_urlsafe(24)))
        with self.lock:
            self.issued[token] = Issued(user, time.monotonic() + self.lifetime)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}


def _error(status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": error, "error_description": description}


@contextmanager
def running_token_endpoint(tls: ssl.SSLContext | None = None) -> Iterator[TokenEndpoint]:
    """A token endpoint on a free loopback port for the duration of the block; over HTTPS with `tls`.

    With `tls`, a client that does not trust the certificate fails the handshake: no request reaches
    the endpoint (`requests` stays empty).
    """
    endpoint = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = {name: values[0] for name, values in parse_qs(body).items()}
            status, answer = endpoint.answer(self.path, form, self.headers.get("Authorization", ""))
            if endpoint.delay:
                time.sleep(endpoint.delay)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    if tls is not None:  # a failed handshake is dropped by the server loop (an OSError from accept)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        endpoint.url = f"https://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


class XOAuth2Handler(FaultyHandler):
    """Stores messages; logs in only with `AUTH XOAUTH2` and a live token from `endpoint`.

    `refuse` makes it refuse every token (a mailbox the app may not use). A refusal is answered
    as Google does: a 334 challenge with a JSON error, then 535 after the client's empty line.
    """

    def __init__(self, endpoint: TokenEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.refuse = False
        self.oauth_logins: list[str] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        try:
            fields = base64.b64decode(args[1]).decode().split("\x01")
            user = fields[0].removeprefix("user=")
            token = next(f for f in fields if f.startswith("auth=Bearer ")).removeprefix("auth=Bearer ")
        except (IndexError, ValueError, StopIteration):
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed XOAUTH2")
        if self.refuse or not self.endpoint.accepts(token, user):
            await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
            return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")
        self.oauth_logins.append(user)
        return AuthResult(success=True, auth_data=user)


@contextmanager
def running_oauth_smtp(
    ca: trustme.CA, ca_file: Path, endpoint: TokenEndpoint
) -> Iterator[tuple[SmtpServer, XOAuth2Handler]]:
    """A STARTTLS server that requires `AUTH XOAUTH2` (PLAIN and LOGIN are not offered)."""
    handler = XOAuth2Handler(endpoint)
    tls_context = server_tls_context(ca, "localhost", "127.0.0.1")
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        ready_timeout=10.0,
        auth_required=True,
        auth_require_tls=True,
        authenticator=PasswordAuthenticator({}),
        auth_exclude_mechanism=["PLAIN", "LOGIN"],
        tls_context=tls_context,
        require_starttls=True,
    )
    controller.start()
    try:
        yield SmtpServer(handler, controller.port, ca_file, "starttls"), handler
    finally:
        controller.stop()


@contextmanager
def running_basic_auth_disabled_smtp(ca: trustme.CA, ca_file: Path) -> Iterator[SmtpServer]:
    """A STARTTLS server refusing every password login as Microsoft 365 does once Basic auth is off."""

    def refuse(*args: object) -> AuthResult:
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        )

    handler = FaultyHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        ready_timeout=10.0,
        auth_required=True,
        auth_require_tls=True,
        authenticator=refuse,
        tls_context=server_tls_context(ca, "localhost", "127.0.0.1"),
        require_starttls=True,
    )
    controller.start()
    try:
        yield SmtpServer(handler, controller.port, ca_file, "starttls")
    finally:
        controller.stop()
