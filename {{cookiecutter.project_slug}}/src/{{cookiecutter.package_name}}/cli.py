"""Command line: `python -m {{ cookiecutter.package_name }} <command>`; each command is a thin wrapper."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

PROG = "python -m {{ cookiecutter.package_name }}"
DEV_ONLY_MODULES = frozenset({"aiosmtpd", "trustme"})  # the dev SMTP server's, in the dev dependency group
REMOTE_WARNING = """
WARNING ***********************************************************************************************
WARNING  `dev --host {host} --allow-remote`: other machines can reach this development service.
WARNING  DEV_MODE is on: anyone who can connect may use the API with the keys of API_KEYS (the
WARNING  documentation's placeholder key included), send notifications and read them back.
WARNING  The dev inbox still answers only to this machine. Stop it when you are done.
WARNING ***********************************************************************************************
"""


def dev_smtp(args: argparse.Namespace) -> int:
    """Run the embedded SMTP server until interrupted."""
    from .devsmtp import DEV_PASSWORD, DEV_USERNAME, start_dev_server

    controller = start_dev_server(args.dir, host=args.host, port=args.port)
    print(
        f"dev SMTP server on {args.host}:{controller.port}: STARTTLS (CA {args.dir / 'ca.pem'}), "
        f"login {DEV_USERNAME}/{DEV_PASSWORD}, inbox {args.dir / 'inbox'}; Ctrl-C stops it",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


def dev(args: argparse.Namespace) -> int:
    """Run the service against the embedded SMTP server, with the dev inbox mounted."""
    import uvicorn

    from .devsmtp import DEV_PASSWORD, DEV_USERNAME, start_dev_server
    from .mail.core.settings import is_loopback

    if not is_loopback(args.host):
        if not args.allow_remote:
            print(
                f"error: --host {args.host} lets other machines use the API with the documentation's placeholder "
                "key (DEV_MODE is on): use 127.0.0.1, or add --allow-remote if you mean it",
                file=sys.stderr,
            )
            return 2
        print(REMOTE_WARNING.format(host=args.host), file=sys.stderr, flush=True)
    controller = start_dev_server(args.dir, host="127.0.0.1", port=args.smtp_port)
    os.environ.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(controller.port),
        MAIL_STARTTLS="true",
        MAIL_SSL_TLS="false",
        MAIL_USE_CREDENTIALS="true",
        MAIL_USERNAME=DEV_USERNAME,
        MAIL_PASSWORD=DEV_PASSWORD,
        MAIL_VALIDATE_CERTS="true",
        MAIL_CERT_BUNDLE=str(args.dir / "ca.pem"),
        DEV_MODE="true",
        DEV_SMTP_DIR=str(args.dir),
        DATABASE_URL=f"sqlite+aiosqlite:///{args.dir / 'notifications.db'}",
    )
    os.environ.setdefault("MAIL_FROM", "noreply@example.com")
    if migrate(args):
        return 2
{%- if cookiecutter.delivery == "celery" %}
    from .worker import start_dev_worker

    stop_worker = start_dev_worker()  # the queue and a worker in this process: no broker to run
{%- endif %}
    local = args.host if is_loopback(args.host) else "127.0.0.1"  # the inbox answers only to this machine
    print(
        f"dev SMTP server on 127.0.0.1:{controller.port} (STARTTLS, login {DEV_USERNAME}/{DEV_PASSWORD}); "
        f"inbox page http://{local}:{args.port}/dev/inbox; "
        f"metrics http://{local}:{args.port}/metrics (Authorization: Bearer <a key of API_KEYS>)",
        flush=True,
    )
    try:
        uvicorn.run("{{ cookiecutter.package_name }}.main:app", host=args.host, port=args.port, log_level="info")
    finally:
{%- if cookiecutter.delivery == "celery" %}
        stop_worker()
{%- endif %}
        controller.stop()
    return 0


def fail(error: Exception) -> int:
    """Print `error` as one line on stderr; the exit code of bad settings (2)."""
    print(f"error: {error}", file=sys.stderr)
    return 2


def migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the notification store at DATABASE_URL; safe to run twice."""
    import asyncio

    from .mail import SettingsError, load_settings
    from .store import StoreSettings, open_engine, upgrade

    try:
        settings = load_settings(StoreSettings)
    except SettingsError as error:
        return fail(error)

    async def run() -> tuple[str | None, str]:
        engine = open_engine(settings.database_url)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    before, now = asyncio.run(run())
    print(f"notification store at revision {now}" + ("" if before == now else f" (was {before or 'empty'})"))
    return 0


def purge(args: argparse.Namespace) -> int:
    """Apply retention now: delete old bodies (BODY_RETENTION) and records (ROW_RETENTION)."""
    import asyncio

    from .delivery.dispatcher import apply_retention
    from .mail import SettingsError, load_settings
    from .observability.logs import LogSettings, configure_logging
    from .store import NotificationStore, SchemaError, StoreSettings, check_schema, open_engine

    try:
        settings = load_settings(StoreSettings)
        configure_logging(load_settings(LogSettings))
    except SettingsError as error:
        return fail(error)

    async def run() -> tuple[int, int]:
        store = NotificationStore(open_engine(settings.database_url))
        try:
            await check_schema(store.engine)
            return await apply_retention(store, settings)
        finally:
            await store.aclose()

    try:
        bodies, rows = asyncio.run(run())
    except SchemaError as error:
        return fail(error)
    print(f"deleted {bodies} body(ies) of sent notifications and {rows} record(s)")
    return 0


def check_mail(args: argparse.Namespace) -> int:
    """Connect, negotiate TLS, log in and offer MAIL_FROM (never send); print one diagnosis, warnings on stderr,
    then the rate limits in force."""
    import json

    from .mail import MailSettings, SettingsError, load_settings
    from .mail.doctor.report import check_mail as diagnose
    from .ratelimit.settings import RateLimitSettings, limits_in_force, provider_warnings
    from .settings import RecipientLimit

    try:
        rates, recipients = load_settings(RateLimitSettings), load_settings(RecipientLimit)
    except SettingsError as error:
        return fail(error)
    report = diagnose(deliverability=args.deliverability)
    try:
        mail: MailSettings | None = load_settings(MailSettings)
    except SettingsError:
        mail = None  # the diagnosis says why; without MAIL_SERVER no provider default is known
    warnings = list(report.warnings)
    if mail is not None:
        warnings += provider_warnings(mail.server, recipients.max_recipients, mail.pool_size)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    limits = limits_in_force(rates, mail.server).each() if mail is not None else ()
    if args.json:
        found = [
            {"variable": limit.variable, "limit": limit.text, "source": limit.source} for limit in limits
        ]
        print(json.dumps({**report.as_dict(), "limits": found}), flush=True)
    elif limits:
        lines = [f"  {limit.describe()}" for limit in limits]
        print(report.render(), "rate limits, for every process together:", *lines, sep="\n", flush=True)
    else:
        print(report.render(), flush=True)
    return report.exit_code


def templates_check(args: argparse.Namespace) -> int:
    """Render every email template in every locale with its example.json; 1 on any error."""
    from .mail import SettingsError, load_settings
    from .notifications.check import run_check
    from .notifications.settings import MessageSettings

    try:
        folder = args.dir or load_settings(MessageSettings).templates_folder
    except SettingsError as error:
        return fail(error)
    return run_check(folder)


def dkim_keygen(args: argparse.Namespace) -> int:
    """Write a new DKIM private key (mode 0600) and print the DNS record to publish, and how to sign with it."""
    from .mail.signing.dkim import DkimSigner, generate_key, private_pem

    if args.out.exists():
        print(f"{args.out} exists: choose another --out, or delete it if you mean to replace the key")
        return 1
    signer = DkimSigner(args.domain, args.selector, generate_key(args.algorithm, args.bits))
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private_pem(signer.key))
    print(f"wrote the private key to {args.out} (mode 0600; never commit it)")
    print(f"publish this TXT record at {signer.record_name}:")
    print(f"  {signer.dns_record()}")
    print(
        f"then set MAIL_DKIM_DOMAIN={args.domain} MAIL_DKIM_SELECTOR={args.selector} "
        f"MAIL_DKIM_PRIVATE_KEY_FILE={args.out}"
    )
    other = "ed25519" if args.algorithm == "rsa" else "rsa"
    print(
        f"or, to sign with both algorithms (receivers that do not know Ed25519 verify the RSA signature), "
        f"make a {other} key too (--algorithm {other}) and list both, in the same order: "
        f"MAIL_DKIM_SELECTOR={args.selector},<its selector> MAIL_DKIM_PRIVATE_KEY_FILE={args.out},<its file>"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(prog=PROG, description="Commands of the mail service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_dir = Path(os.environ.get("DEV_SMTP_DIR", ".dev-smtp"))

    commands.add_parser(
        "migrate", help="create or upgrade the notification store (DATABASE_URL)"
    ).set_defaults(handler=migrate)
    commands.add_parser(
        "purge", help="delete old notifications now (BODY_RETENTION, ROW_RETENTION)"
    ).set_defaults(handler=purge)

    check = commands.add_parser(
        "check-mail", help="check that SMTP connect, TLS, login and the sender work (never sends)"
    )
    check.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    check.add_argument(
        "--deliverability",
        action="store_true",
        help="also check MAIL_FROM's domain in DNS: SPF, DKIM, DMARC, MX (resolver: MAIL_DNS_SERVER)",
    )
    check.set_defaults(handler=check_mail)

    templates = commands.add_parser("templates", help="email templates: `templates check` renders them all")
    check_templates = templates.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "check", help="render every template in every locale with its example.json (fails on any error)"
    )
    check_templates.add_argument("--dir", type=Path, help="templates folder (default: MAIL_TEMPLATES_DIR)")
    check_templates.set_defaults(handler=templates_check)

    keygen = commands.add_parser("dkim-keygen", help="write a DKIM private key and print the DNS record")
    keygen.add_argument("--domain", required=True, help="signing domain (MAIL_DKIM_DOMAIN)")
    keygen.add_argument("--selector", required=True, help="selector (MAIL_DKIM_SELECTOR), e.g. s1")
    keygen.add_argument(
        "--out", type=Path, default=Path("dkim.pem"), help="private key file (default dkim.pem)"
    )
    keygen.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa", help="default rsa")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    keygen.set_defaults(handler=dkim_keygen)

    run_dev = commands.add_parser("dev", help="run the service with the embedded SMTP server and dev inbox")
    run_dev.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1, loopback)")
    run_dev.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (a development service with DEV_MODE on)",
    )
    run_dev.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    run_dev.add_argument("--smtp-port", type=int, default=2525, help="SMTP port (default 2525)")
    run_dev.add_argument("--dir", type=Path, default=default_dir, help="CA and inbox folder")
    run_dev.set_defaults(handler=dev)

    smtp = commands.add_parser("dev-smtp", help="run only the embedded SMTP server (STARTTLS, login dev/dev)")
    smtp.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    smtp.add_argument("--port", type=int, default=2525, help="port (default 2525)")
    smtp.add_argument("--dir", type=Path, default=default_dir, help="CA and inbox folder")
    smtp.set_defaults(handler=dev_smtp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen command; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in DEV_ONLY_MODULES:
            raise
        print(
            f"error: the dev SMTP server needs the dev dependencies ({missing} is not installed): "
            "run `make setup`, or `pip install aiosmtpd trustme`",
            file=sys.stderr,
        )
        return 2
