"""Sending throughput: the same distinct messages over STARTTLS + AUTH to a local sink, three ways.

1. fastapi-mail: `FastMail.send_message`, one call per message (each call connects, builds a TLS
   context, negotiates TLS, logs in, sends and quits);
2. a hand-written aiosmtplib pool: 4 sessions sharing one TLS context, the same fastapi-mail MIME;
3. the rendered project's `Mailer.send_many` (pool of 4);
4. the same with DKIM signing: an RSA-2048 key, an Ed25519 key, and both together (two signatures per
   message, as RFC 8463 advises; target: at most 15 % slower with RSA-2048 than unsigned).

The sink runs in its own process (see common.py). Every run checks that the sink received exactly
the messages sent. Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_send.py [--messages 300] [--rounds 5] [--json] [--check] [--dkim-only]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiosmtplib
from common import PASSWORD, SENDER, USERNAME, Sink, make_tls, messages, render_project, workspace
from fastapi_mail import FastMail

POOL_SIZE = 4
TARGET_VS_FASTAPI_MAIL = 30.0
TARGET_VS_HAND_POOL = 1.0
TARGET_DKIM_RSA_LOSS_PERCENT = 15.0

LABELS = {
    "fastapi_mail_per_message": "fastapi-mail FastMail.send_message, one call per message",
    "hand_pool": f"aiosmtplib hand pool, {POOL_SIZE} sessions, one TLS context",
    "mailer_send_many": f"Mailer.send_many, pool of {POOL_SIZE}",
    "mailer_send_many_dkim_rsa2048": "  the same, DKIM-signed with RSA-2048",
    "mailer_send_many_dkim_ed25519": "  the same, DKIM-signed with Ed25519",
    "mailer_send_many_dkim_both": "  the same, DKIM-signed with RSA-2048 and Ed25519",
}
DKIM_VARIANTS = {"rsa2048": ("rsa",), "ed25519": ("ed25519",), "both": ("rsa", "ed25519")}
DKIM_LABELS = {"rsa2048": "RSA-2048", "ed25519": "Ed25519", "both": "both"}

Run = Callable[[], Coroutine[Any, Any, None]]


async def fastapi_mail_per_message(settings: Any, batch: list[Any]) -> None:
    """What most FastAPI apps do: one `send_message` call per message."""
    fastmail = FastMail(settings.connection_config())
    for message in batch:
        await fastmail.send_message(message)


async def hand_pool(settings: Any, batch: list[Any]) -> None:
    """A minimal correct pool: POOL_SIZE logged-in sessions, one TLS context, workers share a queue."""
    fastmail = FastMail(settings.connection_config())
    queue = iter(batch)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=settings.server,
            port=settings.port,
            start_tls=True,
            tls_context=settings.tls_context,
            username=settings.username,
            password=settings.password.get_secret_value(),
            timeout=settings.timeout,
        )
        await smtp.connect()
        try:
            for message in queue:
                await smtp.send_message(await fastmail.get_message(message))
        finally:
            await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(POOL_SIZE)))


async def mailer_send_many(mail: Any, settings: Any, batch: list[Any]) -> None:
    """The rendered project's pooled Mailer."""
    async with mail.Mailer(settings) as mailer:
        results = await mailer.send_many(batch)
    failures = [result for result in results if isinstance(result, mail.MailError)]
    if failures:
        raise RuntimeError(f"{len(failures)} messages failed, the first with: {failures[0]}")


def dkim_settings(mail: Any, connection: dict[str, Any], directory: Path, algorithms: tuple[str, ...]) -> Any:
    """Settings for `connection` plus DKIM signing for the sender's domain with a new key of each algorithm."""
    signing = importlib.import_module(f"{mail.__name__}.signing.dkim")
    key_files = []
    for algorithm in algorithms:
        key_file = directory / f"dkim-{algorithm}.pem"
        if not key_file.exists():
            key_file.write_bytes(signing.private_pem(signing.generate_key(algorithm)))
            key_file.chmod(0o600)  # as dkim-keygen writes it (else the settings warn)
        key_files.append(key_file)
    domain = SENDER.rpartition("@")[2]
    selectors = ",".join(f"bench-{algorithm}" for algorithm in algorithms)
    return mail.MailSettings(
        **connection, dkim_domain=domain, dkim_selector=selectors, dkim_private_key_file=tuple(key_files)
    )


def signing_cost_us(mail: Any, settings: Any, batch: list[Any]) -> float:
    """Microseconds of the Mailer's DKIM signing per message, over the serialized batch, without SMTP."""
    serialize = importlib.import_module(f"{mail.__name__}.core.mime").serialize
    fastmail = FastMail(settings.connection_config())

    async def build() -> list[bytes]:
        return [serialize(await fastmail.get_message(message)) for message in batch]

    data = asyncio.run(build())
    sign = settings.dkim_sign()
    started = time.process_time()
    for each in data:
        sign(each)
    return 1e6 * (time.process_time() - started) / len(data)


def rate(sink: Sink, run: Run, count: int) -> float:
    """Messages per second of one run, which must deliver exactly `count` messages."""
    before = sink.received
    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    if sink.received - before != count:
        raise SystemExit(f"the sink received {sink.received - before} of {count} messages")
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="distinct messages per run (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each pooled sender; the median counts")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target ratio is missed")
    parser.add_argument(
        "--dkim-only",
        action="store_true",
        help="only Mailer.send_many unsigned, RSA-2048, Ed25519 and both",
    )
    args = parser.parse_args()
    count = args.messages
    load_before = os.getloadavg()[0]

    with workspace("oscis-bench-send-") as directory:
        project = render_project(directory / "render")
        mail = importlib.import_module(f"{project.package}.mail")
        tls = make_tls(directory)
        with Sink(tls) as sink:
            connection: dict[str, Any] = {
                "server": "localhost",
                "port": sink.port,
                "username": USERNAME,
                "password": PASSWORD,
                "MAIL_FROM": SENDER,
                "starttls": True,
                "ssl_tls": False,
                "cert_bundle": tls.ca_file,
                "timeout": 10,
                "pool_size": POOL_SIZE,
            }
            settings = mail.MailSettings(**connection)
            signed = {
                name: dkim_settings(mail, connection, directory, algorithms)
                for name, algorithms in DKIM_VARIANTS.items()
            }
            batch = messages(args.messages)
            pooled: dict[str, Run] = {"mailer_send_many": lambda: mailer_send_many(mail, settings, batch)}
            for name, variant in signed.items():
                pooled[f"mailer_send_many_dkim_{name}"] = lambda variant=variant: mailer_send_many(
                    mail, variant, batch
                )
            samples: dict[str, list[float]] = {}
            if not args.dkim_only:
                pooled["hand_pool"] = lambda: hand_pool(settings, batch)
                samples["fastapi_mail_per_message"] = [
                    rate(sink, lambda: fastapi_mail_per_message(settings, batch), count)
                ]
            # Rounds alternate between the pooled senders so that load from elsewhere hits them alike.
            for _ in range(args.rounds):
                for name, run in pooled.items():
                    samples.setdefault(name, []).append(rate(sink, run, count))
            rates = {name: statistics.median(values) for name, values in samples.items()}
            sign_cpu_us = {name: signing_cost_us(mail, variant, batch) for name, variant in signed.items()}

    load = (load_before, os.getloadavg()[0])
    spread = {name: (min(values), max(values)) for name, values in samples.items()}
    unsigned = rates["mailer_send_many"]
    dkim = {
        name: {
            "msg_per_s": rates[f"mailer_send_many_dkim_{name}"],
            "loss_percent": 100 * (1 - rates[f"mailer_send_many_dkim_{name}"] / unsigned),
            "cost_us_per_message": 1e6 * (1 / rates[f"mailer_send_many_dkim_{name}"] - 1 / unsigned),
            "sign_cpu_us_per_message": sign_cpu_us[name],
        }
        for name in DKIM_VARIANTS
    }
    met = dkim["rsa2048"]["loss_percent"] <= TARGET_DKIM_RSA_LOSS_PERCENT
    ratios = {}
    if not args.dkim_only:
        ratios = {
            "mailer_vs_fastapi_mail": unsigned / rates["fastapi_mail_per_message"],
            "mailer_vs_hand_pool": unsigned / rates["hand_pool"],
        }
        met = (
            met
            and ratios["mailer_vs_fastapi_mail"] >= TARGET_VS_FASTAPI_MAIL
            and ratios["mailer_vs_hand_pool"] >= TARGET_VS_HAND_POOL
        )
    if args.json:
        report = {"messages": args.messages, "rounds": args.rounds, "pool_size": POOL_SIZE, "load": load}
        results = {"msg_per_s": rates, "msg_per_s_min_max": spread, "ratios": ratios, "dkim": dkim}
        print(json.dumps({**report, **results, "targets_met": met}, indent=2))
    else:
        print(
            f"{args.messages} distinct messages, STARTTLS + AUTH, sink in its own process; "
            f"median (min to max) of {args.rounds} rounds; load average {load[0]:.2f} -> {load[1]:.2f}"
        )
        for key, label in LABELS.items():
            if key in rates:
                low, high = spread[key]
                print(f"  {label:<55} {rates[key]:7.1f} msg/s  ({low:.0f} to {high:.0f})")
        if ratios:
            print(
                f"  Mailer / fastapi-mail: {ratios['mailer_vs_fastapi_mail']:5.1f}x  "
                f"(target >= {TARGET_VS_FASTAPI_MAIL:.0f}x)"
            )
            print(
                f"  Mailer / hand pool:    {ratios['mailer_vs_hand_pool']:5.2f}x  "
                f"(target >= {TARGET_VS_HAND_POOL:.1f}x)"
            )
        for name, label in DKIM_LABELS.items():
            each = dkim[name]
            print(
                f"  DKIM {label:<8}: {each['loss_percent']:5.1f} % fewer msg/s than unsigned, "
                f"{each['cost_us_per_message']:5.0f} us per message"
                + (f"  (target <= {TARGET_DKIM_RSA_LOSS_PERCENT:.0f} %)" if name == "rsa2048" else "")
            )
            print(f"    signing alone: {each['sign_cpu_us_per_message']:4.0f} us CPU per message")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
