"""One IMAP session on the bounce mailbox: log in over TLS, list what is new, fetch, mark. Never delete.

The standard library's imaplib, blocking: the poller runs each call on a thread of its own, one
call at a time. It needs no package, takes the same verifying `ssl.SSLContext` as the rest of the
service, and each call is bounded by BOUNCE_IMAP_TIMEOUT; an asyncio client (aioimaplib) would only
save that thread, for a handful of commands a minute, and brings its own response parsing to trust.

A message is fetched with BODY.PEEK (fetching does not make it seen), so only `mark()` decides
what is not read again: `\\Seen` and `$BounceMatched` once its events were handed over,
`$BounceUnmatched` alone for a message matching no notification (it stays unread for a person to
look at; `\\Seen` as well on a server that keeps no keywords of its own).
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from .settings import BounceSettings, ImapMailbox

__all__ = ["MATCHED", "MAX_MESSAGE_BYTES", "UNMATCHED", "BounceMailbox", "MailboxError"]

MATCHED = "$BounceMatched"
UNMATCHED = "$BounceUnmatched"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
"""Bytes of a message fetched at most: the report comes first, only a long returned message is cut."""

FETCHED = re.compile(rb"\bBODY\[\]")


class MailboxError(Exception):
    """The mailbox could not be read or marked: one line naming the server and what to change, never a secret."""


class BounceMailbox:
    """A logged-in session on the BOUNCE_IMAP_URL mailbox (`open()` first, `close()` always)."""

    def __init__(self, settings: BounceSettings) -> None:
        if settings.mailbox is None or settings.imap_password is None:
            raise ValueError("BOUNCE_IMAP_URL and BOUNCE_IMAP_PASSWORD are not set")
        self.target: ImapMailbox = settings.mailbox
        self._password: SecretStr = settings.imap_password
        self._tls_context = settings.tls_context
        self._timeout = settings.imap_timeout
        self._imap: imaplib.IMAP4 | None = None
        self.keeps_keywords = False

    def open(self) -> None:
        """Connect (TLS, the certificate verified), log in and select the mailbox read-write."""
        target = self.target
        with self._failures("cannot connect", "check the host and port of BOUNCE_IMAP_URL"):
            if target.tls:
                self._imap = imaplib.IMAP4_SSL(
                    target.host, target.port, ssl_context=self._tls_context, timeout=self._timeout
                )
            else:
                self._imap = imaplib.IMAP4(target.host, target.port, timeout=self._timeout)
        with self._failures(
            f"the login of {target.user} was refused",
            "check BOUNCE_IMAP_PASSWORD and the user in BOUNCE_IMAP_URL",
        ):
            self._session.login(target.user, self._password.get_secret_value())
        with self._failures(f"cannot open the mailbox {target.mailbox}", "check the path of BOUNCE_IMAP_URL"):
            self._ok(self._session.select(_quoted(target.mailbox)))
            flags = b" ".join(item for item in self._session.response("PERMANENTFLAGS")[1] if item)
        self.keeps_keywords = b"\\*" in flags or (MATCHED.encode() in flags and UNMATCHED.encode() in flags)

    def unseen(self, limit: int) -> list[int]:
        """The UIDs of up to `limit` unseen messages not marked yet, oldest first."""
        criteria = ["UNSEEN"]
        if self.keeps_keywords:
            criteria += ["UNKEYWORD", MATCHED, "UNKEYWORD", UNMATCHED]
        with self._failures("cannot search the mailbox"):
            data = self._ok(self._session.uid("SEARCH", *criteria))
        return sorted(int(uid) for uid in (data[0] or b"").split())[:limit]

    def fetch(self, uid: int) -> bytes | None:
        """The message (its first MAX_MESSAGE_BYTES), leaving it unseen; None if it is gone."""
        with self._failures(f"cannot fetch message {uid}"):
            data = self._ok(self._session.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>)"))
        for item in data:
            if isinstance(item, tuple) and FETCHED.search(item[0]):
                return bytes(item[1])
        return None

    def mark(self, uid: int, matched: bool) -> None:
        """Flag a handled message so it is not read again (never deleted)."""
        if matched:
            flags = ["\\Seen", MATCHED] if self.keeps_keywords else ["\\Seen"]
        else:
            flags = [UNMATCHED] if self.keeps_keywords else ["\\Seen"]
        with self._failures(f"cannot mark message {uid}"):
            self._ok(self._session.uid("STORE", str(uid), "+FLAGS.SILENT", f"({' '.join(flags)})"))

    def close(self) -> None:
        """Log out; never raises (the session may already be broken)."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            imap.shutdown()

    @property
    def _session(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise MailboxError("the bounce mailbox is not open")
        return self._imap

    @staticmethod
    def _ok(reply: tuple[str, list[Any]]) -> list[Any]:
        status, data = reply
        if status != "OK":
            raise imaplib.IMAP4.error(b" ".join(item for item in data if isinstance(item, bytes)))
        return data

    @contextmanager
    def _failures(self, what: str, fix: str = "") -> Iterator[None]:
        """Turn what imaplib, ssl and sockets raise into one MailboxError line."""
        try:
            yield
        except ssl.SSLCertVerificationError as error:
            raise self._error(
                f"{what} (certificate not trusted: {error.verify_message})",
                "set BOUNCE_IMAP_CA_BUNDLE to the CA file of a private server",
            ) from None
        except imaplib.IMAP4.error as error:
            raise self._error(f"{what} ({_reason(error)})", fix) from None
        except (ssl.SSLError, OSError) as error:
            raise self._error(f"{what} ({error.strerror or _reason(error)})", fix) from None

    def _error(self, problem: str, fix: str) -> MailboxError:
        text = f"bounce mailbox {self.target.where}: {problem}" + (f": {fix}" if fix else "")
        line, secret = " ".join(text.split()), self._password.get_secret_value()
        return MailboxError(line.replace(secret, "***") if secret else line)


def _reason(error: BaseException) -> str:
    """An exception's text on one line (imaplib passes the server's words as bytes)."""
    text = error.args[0] if error.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split()) or type(error).__name__


def _quoted(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string (imaplib sends arguments as given)."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
