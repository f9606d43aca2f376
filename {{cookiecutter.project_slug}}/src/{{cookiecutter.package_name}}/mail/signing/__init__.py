"""DKIM signing (RFC 6376, RFC 8463) of the bytes sent: on when MAIL_DKIM_DOMAIN is set (dkimpy, the `dkim` extra)."""
