"""Signing in to the SMTP server: a password (CRAM-MD5, PLAIN, LOGIN) or an OAuth2 token (XOAUTH2)."""
