"""What this package knows about mail providers, in one table: their hosts, SPF include, OAuth2, login advice
and documented sending limits.

The template's provider presets (which fill `.env.example`) name the same providers; a template
test keeps both in step. Sign-in reads the OAuth2 endpoints, the doctor the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OAUTH_PROVIDERS", "PROVIDERS", "OAuthProvider", "Provider", "SendingLimits", "provider_of"]


@dataclass(frozen=True)
class OAuthProvider:
    """An OAuth2 identity provider: its token endpoint (`{tenant}` filled from MAIL_OAUTH_TENANT_ID) and SMTP scope."""

    token_url: str
    scope: str


OAUTH_PROVIDERS = {
    "microsoft": OAuthProvider(
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "https://outlook.office365.com/.default",
    ),
    "google": OAuthProvider("https://oauth2.googleapis.com/token", "https://mail.google.com/"),
}
"""The MAIL_OAUTH_PROVIDER values that need more than MAIL_OAUTH_TOKEN_URL (tenant URL, service accounts)."""


@dataclass(frozen=True)
class SendingLimits:
    """What a provider documents about how much one account may send; empty or 0 where it documents nothing.

    `messages` and `recipients` are per period in the `limits` notation ("30/minute,10000/day"), for
    MAIL_RATE_LIMIT and MAIL_RECIPIENT_RATE_LIMIT; `max_recipients` is the most recipients of one
    message (MAX_RECIPIENTS), `sessions` the most SMTP sessions at once (MAIL_POOL_SIZE).
    """

    messages: str = ""
    recipients: str = ""
    max_recipients: int = 0
    sessions: int = 0
    source: str = ""
    """The provider's page that documents them."""


@dataclass(frozen=True)
class Provider:
    """A preset's provider: MAIL_SERVER under one of `domains` is theirs."""

    name: str
    domains: tuple[str, ...]
    spf_include: str
    login_advice: str
    """What to check when it refuses a login; `{shown}` marks where a wrong fixed `username` is quoted."""
    oauth: str = ""
    """The MAIL_OAUTH_PROVIDER that signs in to it, if any."""
    username: str = ""
    """The user name it requires of everyone, if any."""
    limits: SendingLimits = SendingLimits()


PROVIDERS = (
    Provider(
        "gmail",
        ("gmail.com", "googlemail.com", "google.com"),
        "_spf.google.com",
        "Gmail refuses the account password: turn on 2-Step Verification and set MAIL_PASSWORD to a "
        "16-letter App Password (Google Account > Security > App passwords)",
        oauth="google",
        limits=SendingLimits(
            "2000/day", "10000/day", 100, source="https://support.google.com/a/answer/166852"
        ),
    ),
    Provider(
        "sendgrid",
        ("sendgrid.net",),
        "sendgrid.net",
        "SendGrid: MAIL_USERNAME must be the literal word apikey{shown} and MAIL_PASSWORD an API key with Mail "
        "Send permission",
        username="apikey",
    ),
    Provider(
        "mailgun",
        ("mailgun.org",),
        "mailgun.org",
        "Mailgun: use the sending domain's SMTP credentials (Sending > Domain settings > SMTP credentials), "
        "e.g. MAIL_USERNAME=postmaster@your-domain",
    ),
    Provider(
        "ses",
        ("amazonaws.com",),
        "amazonses.com",
        "Amazon SES: use SMTP credentials created in the SES console (SMTP settings) for this region; AWS "
        "access keys do not work as SMTP passwords",
        limits=SendingLimits(
            "1/second", "200/day", 50, source="https://docs.aws.amazon.com/ses/latest/dg/quotas.html"
        ),
    ),
    Provider(
        "office365",
        ("office365.com", "outlook.com"),
        "spf.protection.outlook.com",
        "Microsoft 365: enable Authenticated SMTP for the mailbox (admin center > user > Mail > Manage email "
        "apps); security defaults or MFA policies can also block SMTP login",
        oauth="microsoft",
        limits=SendingLimits(
            "30/minute",
            "10000/day",
            500,
            3,
            "https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#sending-limits",
        ),
    ),
    Provider(
        "postmark",
        ("postmarkapp.com",),
        "spf.mtasv.net",
        "Postmark: MAIL_USERNAME and MAIL_PASSWORD must both be the Server API token",
        limits=SendingLimits(
            max_recipients=50,
            source="https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean",
        ),
    ),
)


def provider_of(server: str) -> Provider | None:
    """The provider MAIL_SERVER belongs to, or None (a local or your own server)."""
    host = server.lower().rstrip(".")
    for provider in PROVIDERS:
        if any(host == domain or host.endswith("." + domain) for domain in provider.domains):
            return provider
    return None
