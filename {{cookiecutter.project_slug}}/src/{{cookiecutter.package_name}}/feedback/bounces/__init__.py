"""Bounces for plain SMTP (own Postfix, Microsoft 365, Google Workspace), read from an IMAP mailbox.

- `verp.py`: the envelope sender `bounces+<notification id>@BOUNCE_DOMAIN`, and the id read back.
- `reports.py`: a bounce message (RFC 3464 DSN, or a text bounce flufl.bounce knows) as `DeliveryEvent`s.
- `mailbox.py`: one IMAP session (imaplib over verified TLS): new messages, fetched, then marked.
- `poller.py`: `BouncePoller(settings, handle).run()` reads the mailbox with backoff until `stop()`.
- `settings.py`: the `BOUNCE_*` variables.
"""

from .mailbox import MATCHED, UNMATCHED, MailboxError
from .poller import BouncePoller, EventHandler, PollResult
from .reports import SOURCE, read_report
from .settings import BounceSettings
from .verp import notification_id_from, verp_address

__all__ = [
    "MATCHED",
    "SOURCE",
    "UNMATCHED",
    "BouncePoller",
    "BounceSettings",
    "EventHandler",
    "MailboxError",
    "PollResult",
    "notification_id_from",
    "read_report",
    "verp_address",
]
