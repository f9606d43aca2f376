"""What check-mail found: a `Problem` class with its exit code, and a `Diagnosis` to print.

Exit codes are stable: scripts rely on them (the generated README lists them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..core.loading import SettingsError

__all__ = ["Diagnosis", "Found", "Problem", "render_diagnosis", "settings_diagnosis"]


class Problem(StrEnum):
    """One class per diagnosis; `exit_code` tells them apart for scripts.

    Exit codes are grouped: 2 settings, 10-19 reaching an SMTP server, 20-29 TLS, 30-39 login,
    40-49 OAuth2 (MAIL_AUTH=xoauth2), 60-69 the sender (`MAIL FROM` and `RCPT TO`, never DATA); 50 and
    51 are `--deliverability`'s (`deliverability.verdict`).
    """

    OK = "ok"
    SETTINGS_INVALID = "settings_invalid"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_FAILED = "connect_failed"
    NO_GREETING = "no_greeting"
    CONNECTION_CLOSED = "connection_closed"
    NOT_SMTP = "not_smtp"
    SERVER_REJECTED = "server_rejected"
    SERVER_TIMEOUT = "server_timeout"
    UNEXPECTED_REPLY = "unexpected_reply"
    # The port speaks implicit TLS, but the settings expect a plain greeting (STARTTLS or no TLS).
    IMPLICIT_TLS_ON_STARTTLS_PORT = "implicit_tls_on_starttls_port"
    # The port speaks plain SMTP (usually with STARTTLS), but the settings say MAIL_SSL_TLS=true.
    STARTTLS_ON_IMPLICIT_TLS_PORT = "starttls_on_implicit_tls_port"
    CERTIFICATE_UNTRUSTED = "certificate_untrusted"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    CERTIFICATE_EXPIRED = "certificate_expired"
    TLS_FAILED = "tls_failed"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    AUTH_REQUIRES_TLS = "auth_requires_tls"
    AUTH_NOT_OFFERED = "auth_not_offered"
    AUTH_FAILED = "auth_failed"
    OAUTH_REQUIRED = "oauth_required"
    OAUTH_ENDPOINT_UNREACHABLE = "oauth_endpoint_unreachable"
    OAUTH_CLIENT_INVALID = "oauth_client_invalid"
    OAUTH_CONSENT_MISSING = "oauth_consent_missing"
    OAUTH_GRANT_INVALID = "oauth_grant_invalid"
    OAUTH_TOKEN_REFUSED = "oauth_token_refused"  # noqa: S105 - a problem class, not a secret
    OAUTH_ENDPOINT_UNTRUSTED = "oauth_endpoint_untrusted"
    # The server refused MAIL FROM (or a sender restriction at RCPT): the address, or no login.
    SENDER_REFUSED = "sender_refused"
    # The login may not send as MAIL_FROM (Postfix reject_sender_login_mismatch: "not owned by user").
    SENDER_NOT_OWNED = "sender_not_owned"
    # The server refused RCPT: it does not relay for this client ("Client host rejected", "Relay access denied").
    RELAY_REFUSED = "relay_refused"

    @property
    def exit_code(self) -> int:
        """The process exit code for this class (0 only for OK)."""
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Problem.OK: 0,
    Problem.SETTINGS_INVALID: 2,
    Problem.DNS_FAILURE: 10,
    Problem.CONNECTION_REFUSED: 11,
    Problem.CONNECT_TIMEOUT: 12,
    Problem.CONNECT_FAILED: 13,
    Problem.NO_GREETING: 14,
    Problem.CONNECTION_CLOSED: 15,
    Problem.NOT_SMTP: 16,
    Problem.SERVER_REJECTED: 17,
    Problem.SERVER_TIMEOUT: 18,
    Problem.UNEXPECTED_REPLY: 19,
    Problem.IMPLICIT_TLS_ON_STARTTLS_PORT: 20,
    Problem.STARTTLS_ON_IMPLICIT_TLS_PORT: 21,
    Problem.CERTIFICATE_UNTRUSTED: 22,
    Problem.HOSTNAME_MISMATCH: 23,
    Problem.CERTIFICATE_EXPIRED: 24,
    Problem.TLS_FAILED: 25,
    Problem.STARTTLS_NOT_OFFERED: 26,
    Problem.AUTH_REQUIRES_TLS: 30,
    Problem.AUTH_NOT_OFFERED: 31,
    Problem.AUTH_FAILED: 32,
    Problem.OAUTH_REQUIRED: 33,
    Problem.OAUTH_ENDPOINT_UNREACHABLE: 40,
    Problem.OAUTH_CLIENT_INVALID: 41,
    Problem.OAUTH_CONSENT_MISSING: 42,
    Problem.OAUTH_GRANT_INVALID: 43,
    Problem.OAUTH_TOKEN_REFUSED: 44,
    Problem.OAUTH_ENDPOINT_UNTRUSTED: 45,
    Problem.SENDER_REFUSED: 60,
    Problem.SENDER_NOT_OWNED: 61,
    Problem.RELAY_REFUSED: 62,
}


class Found(Exception):  # noqa: N818 - control flow, not an error
    """Ends a probe with a diagnosis: the `problem`, what was found and the fix."""

    def __init__(self, problem: Problem, message: str, fix: str) -> None:
        super().__init__(problem.value)
        self.problem, self.message, self.fix = problem, message, fix


@dataclass(frozen=True)
class Diagnosis:
    """The outcome of a probe: what is wrong (or OK) and how to fix it, one line each."""

    problem: Problem
    message: str
    fix: str
    server: str = ""
    port: int = 0
    elapsed: float = 0.0
    warnings: tuple[str, ...] = ()
    """What the probe found that works but may not always (a server offering login to a client that does not log
    in...), one line each."""

    @property
    def ok(self) -> bool:
        """True when connect, TLS, login and the sender (MAIL FROM, RCPT TO) all succeeded."""
        return self.problem is Problem.OK

    @property
    def exit_code(self) -> int:
        """The process exit code: 0 when OK, distinct per problem class otherwise."""
        return self.problem.exit_code

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for `check-mail --json` and the health endpoint."""
        return {
            "ok": self.ok,
            "problem": self.problem.value,
            "exit_code": self.exit_code,
            "message": self.message,
            "fix": self.fix,
            "server": self.server,
            "port": self.port,
            "elapsed_seconds": round(self.elapsed, 3),
        }


def render_diagnosis(diagnosis: Diagnosis, json_output: bool = False) -> str:
    """The diagnosis as printed by `check-mail`: JSON, or two lines for people."""
    if json_output:
        return json.dumps(diagnosis.as_dict())
    if diagnosis.ok:
        return f"OK: {diagnosis.message} ({diagnosis.elapsed:.2f} s)"
    return f"FAILED [{diagnosis.problem.value}]: {diagnosis.message}\nfix: {diagnosis.fix}"


def settings_diagnosis(error: SettingsError) -> Diagnosis:
    """A diagnosis for settings that do not load (exit code 2, as when the service refuses to start)."""
    return Diagnosis(
        Problem.SETTINGS_INVALID,
        str(error),
        "correct the variables named in the message, in the environment or .env",
    )
