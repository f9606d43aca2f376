"""Provider advice for a refused login: each large provider has its own convention."""

from __future__ import annotations

__all__ = ["login_advice"]


def login_advice(server: str, username: str) -> str:
    """What to check when `server` rejects a login: provider-specific advice from the host name."""
    host = server.lower().rstrip(".")

    def on(*domains: str) -> bool:
        return any(host == domain or host.endswith("." + domain) for domain in domains)

    if on("gmail.com", "googlemail.com"):
        return (
            "Gmail refuses the account password: turn on 2-Step Verification and set MAIL_PASSWORD to a "
            "16-letter App Password (Google Account > Security > App passwords)"
        )
    if on("sendgrid.net"):
        user = "" if username == "apikey" else f" (it is {username!r})"
        return (
            f"SendGrid: MAIL_USERNAME must be the literal word apikey{user} and MAIL_PASSWORD an API key "
            "with Mail Send permission"
        )
    if on("postmarkapp.com"):
        return "Postmark: MAIL_USERNAME and MAIL_PASSWORD must both be the Server API token"
    if on("office365.com", "outlook.com"):
        return (
            "Microsoft 365: enable Authenticated SMTP for the mailbox (admin center > user > Mail > "
            "Manage email apps); security defaults or MFA policies can also block SMTP login"
        )
    if on("amazonaws.com"):
        return (
            "Amazon SES: use SMTP credentials created in the SES console (SMTP settings) for this "
            "region; AWS access keys do not work as SMTP passwords"
        )
    if on("mailgun.org"):
        return (
            "Mailgun: use the sending domain's SMTP credentials (Sending > Domain settings > "
            "SMTP credentials), e.g. MAIL_USERNAME=postmaster@your-domain"
        )
    return "check MAIL_USERNAME and MAIL_PASSWORD (the server rejected this pair)"
