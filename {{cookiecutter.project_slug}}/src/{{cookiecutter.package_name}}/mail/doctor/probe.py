"""The probe behind check-mail and /health/mail: connect, TLS, login and the sender, never send.

`probe()` looks MAIL_SERVER up, then opens a session exactly as the `Mailer` does
(`core.session.open_session` with the same `Login`: the same EHLO name, TLS and login methods), then
asks whether the server takes mail from MAIL_FROM (`sender.check_sender`: MAIL FROM, RCPT TO, RSET)
and stops there: it never sends DATA. Each step is bounded by MAIL_TIMEOUT, as when sending (RSET
and QUIT take at most half a second more each). Each failure becomes one `Diagnosis`, and the
password never appears in one, even if the server echoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiosmtplib

from ..core.errors import redact
from ..core.session import Progress, open_session, smtp_client
from ..signin.login import login_for
from ..signin.settings import SigninSettings
from .diagnoser import Diagnoser
from .diagnosis import Diagnosis, Found, Problem
from .login import shown_username
from .raw import resolve
from .sender import check_sender

__all__ = ["probe"]

CLOSE_TIMEOUT = 0.5


async def probe(settings: SigninSettings) -> Diagnosis:
    """Connect, negotiate TLS, log in and offer MAIL_FROM (never send); diagnose the first step that fails."""
    started = time.monotonic()
    smtp = smtp_client(settings)
    progress = Progress(settings.where)
    warnings: tuple[str, ...] = ()
    try:
        await resolve(settings)
        await open_session(smtp, settings, progress, login_for(settings, cooldown=False))
        warnings = await check_sender(smtp, settings)
        found = Found(Problem.OK, _success(settings), "nothing to fix")
    except Exception as error:  # every failure becomes a diagnosis
        found = await Diagnoser(settings, smtp, progress).diagnose(error)
    finally:
        await _close(smtp)
    secrets = settings.secret_forms()
    return Diagnosis(
        found.problem,
        redact(found.message, secrets),
        redact(found.fix, secrets),
        settings.server,
        settings.port,
        time.monotonic() - started,
        tuple(redact(warning, secrets) for warning in warnings),
    )


def _success(settings: SigninSettings) -> str:
    tls = "implicit TLS" if settings.ssl_tls else "STARTTLS" if settings.starttls else "no TLS"
    login = f"login as {shown_username(settings)}" if settings.use_credentials else "no login"
    return f"{settings.where} accepted the connection, {tls} and {login}, and takes mail from {settings.from_address}"


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely after a dialogue that is still up (a courtesy, bounded), then drop the socket."""
    if smtp.is_connected:
        with contextlib.suppress(Exception):
            await smtp.quit(timeout=CLOSE_TIMEOUT)
    with contextlib.suppress(Exception):
        smtp.close()
    await asyncio.sleep(0)  # let the loop release the socket
