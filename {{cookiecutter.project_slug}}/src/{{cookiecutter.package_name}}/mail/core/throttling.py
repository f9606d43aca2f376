"""Throttling replies: what a server's refusal says about the sender's pace, read from its codes.

A submission server slows a sender down with some 4xx replies and says that the sender's quota is
spent with some 5xx ones. Neither says anything about the message: it should be sent again later,
more slowly, not retried at once and not failed. `throttle_of` reads a reply by its reply code, its
enhanced status code (RFC 3463) and, for Exchange Online, the documented exception name it carries;
never by its prose, which providers reword and translate.

- `RATE`: 421 (service not available, try again later), 450 and 451 with a rate or try-later status
  (4.7.0, Gmail's 4.7.28 and 4.2.1, 4.4.5 congestion, Exchange Online's 4.7.500-699 and 4.7.850-899),
  452 4.5.3 (too many recipients), 454 4.7.0 or a bare 454 (Amazon SES's "Throttling failure").
- `CONNECTIONS`: Exchange Online's 432 4.3.2 (more than three sessions of one mailbox at once).
- `QUOTA`: Gmail's 550 5.4.5 (daily sending quota), Exchange Online's 5.1.90 (daily recipients),
  5.7.232 and 5.7.233 (tenant's external recipients) and 5.2.0 / 5.2.2 with
  SubmissionQuotaExceededException: the sender may send again once the provider's window has passed.

Sources: Gmail SMTP errors and codes (https://support.google.com/a/answer/3726730); Exchange
Online's NDR and SMTP errors
(https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/non-delivery-reports-in-exchange-online)
and SMTP submission limits
(https://learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements);
Amazon SES sending quota errors (https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html).
"""

from __future__ import annotations

import re
from enum import StrEnum

import aiosmtplib

from .errors import causes_of

__all__ = ["Throttle", "enhanced_status", "throttle_of", "throttle_of_error"]

Status = tuple[int, int, int]


class Throttle(StrEnum):
    """What a throttling reply asks of the sender, mildest first."""

    RATE = "rate"
    """Send more slowly."""
    CONNECTIONS = "connections"
    """Open fewer sessions at once."""
    QUOTA = "quota"
    """Send nothing more until the provider's window (often a rolling day) has passed."""


ENHANCED_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
RATE_STATUSES = frozenset({(4, 7, 0), (4, 7, 28), (4, 2, 1), (4, 4, 5)})
"""450/451 statuses that mean "too fast" or "try again later"."""
RATE_RANGES = ((500, 699), (850, 899))
"""Exchange Online's 4.7.x "Access denied, please try again later" ranges."""
QUOTA_STATUSES = frozenset({(5, 4, 5), (5, 1, 90), (5, 7, 232), (5, 7, 233)})
SUBMISSION_QUOTA = "SubmissionQuotaExceededException"
"""Exchange Online's exception name in its 5.2.0 / 5.2.2 submission quota replies (an identifier, not prose)."""


def enhanced_status(text: str) -> Status | None:
    """The enhanced status code a reply's text starts with ("4.7.0 Try again later" -> (4, 7, 0)), or None."""
    found = ENHANCED_STATUS.match(text)
    if found is None:
        return None
    klass, subject, detail = (int(part) for part in found.groups())
    return klass, subject, detail


def throttle_of(code: int, text: str) -> Throttle | None:
    """What the reply `code` `text` (text without the code, as aiosmtplib gives it) asks of the sender, or
    None when it is not about the sender's pace or quota."""
    status = enhanced_status(text)
    if status is not None and status[0] != code // 100:
        status = None  # a status of another class than the reply's: not a status
    if code == 421:
        return Throttle.RATE
    if code == 432 and status == (4, 3, 2):
        return Throttle.CONNECTIONS
    if code in (450, 451) and status is not None and _is_rate_status(status):
        return Throttle.RATE
    if code == 452 and status == (4, 5, 3):
        return Throttle.RATE
    if code == 454 and status in (None, (4, 7, 0)):
        return Throttle.RATE
    if 500 <= code < 600 and status is not None and _is_quota(status, text):
        return Throttle.QUOTA
    return None


def throttle_of_error(error: BaseException) -> Throttle | None:
    """What the server's reply behind `error` (a `MailError` or what aiosmtplib raised) asks of the sender.

    A message refused for every recipient is throttled only when every refusal is; the strongest one
    counts (a quota over a rate).
    """
    for cause in causes_of(error):
        if isinstance(cause, aiosmtplib.SMTPRecipientsRefused):
            found = [throttle_of(refusal.code, refusal.message) for refusal in cause.recipients]
            if not found or None in found:
                return None
            return max((throttle for throttle in found if throttle is not None), key=_strength)
        if isinstance(cause, aiosmtplib.SMTPResponseException):
            return throttle_of(cause.code, cause.message)
    return None


def _is_rate_status(status: Status) -> bool:
    if status in RATE_STATUSES:
        return True
    klass, subject, detail = status
    return (klass, subject) == (4, 7) and any(low <= detail <= high for low, high in RATE_RANGES)


def _is_quota(status: Status, text: str) -> bool:
    if status in QUOTA_STATUSES:
        return True
    return status[:2] == (5, 2) and status[2] in (0, 2) and SUBMISSION_QUOTA in text


def _strength(throttle: Throttle) -> int:
    return list(Throttle).index(throttle)
