"""The deliverability check: MAIL_FROM's domain's SPF, DKIM, DMARC and MX records in DNS (dnspython, the `deliverability` extra)."""
