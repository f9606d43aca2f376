"""The core that sends: settings, messages and MIME, headers, SMTP sessions and their pool, transactions, errors, events."""
