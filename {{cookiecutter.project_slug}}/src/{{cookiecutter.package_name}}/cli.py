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
    )
    os.environ.setdefault("MAIL_FROM", "noreply@example.com")
{%- if cookiecutter.delivery == "celery" %}
    from .worker import start_dev_worker

    stop_worker = start_dev_worker()  # the queue and a worker in this process: no broker to run
{%- endif %}
    print(
        f"dev SMTP server on 127.0.0.1:{controller.port} (STARTTLS, login {DEV_USERNAME}/{DEV_PASSWORD}); "
        f"inbox page http://{args.host}:{args.port}/dev/inbox",
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


def check_mail(args: argparse.Namespace) -> int:
    """Connect, negotiate TLS and log in (never send); print one diagnosis."""
    from .mail.doctor import check_mail_command

    return check_mail_command(json_output=args.json)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(prog=PROG, description="Commands of the mail service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_dir = Path(os.environ.get("DEV_SMTP_DIR", ".dev-smtp"))

    check = commands.add_parser("check-mail", help="check that SMTP connect, TLS and login work")
    check.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    check.set_defaults(handler=check_mail)

    run_dev = commands.add_parser("dev", help="run the service with the embedded SMTP server and dev inbox")
    run_dev.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
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
