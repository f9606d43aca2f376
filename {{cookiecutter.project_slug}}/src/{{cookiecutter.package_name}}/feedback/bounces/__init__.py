"""Bounces for plain SMTP (own Postfix, Microsoft 365, Google Workspace).

- `verp.py`: the envelope sender `bounces+<notification id>@BOUNCE_DOMAIN`, and the id read back.
- `reports.py`: a bounce message (RFC 3464 DSN, or a text bounce flufl.bounce knows) as `DeliveryEvent`s.
"""

from .reports import SOURCE, read_report
from .verp import notification_id_from, verp_address

__all__ = ["SOURCE", "notification_id_from", "read_report", "verp_address"]
