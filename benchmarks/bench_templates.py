"""Templates and attachments: render rate on one core, and the memory a 10 MB attachment costs.

1. Render rate: the rendered project's packaged templates, loaded once (CSS inlined then), each message
   rendered from data: subject, text and HTML of `welcome` in German (the locale fallback included) and
   the whole email (`Composer.compose`: rendering plus the fastapi-mail message). Target: >= 2,000 msg/s.
2. Peak memory above the attachment's own bytes (tracemalloc), for a 10 MB PDF:
   - sending: building the MIME message (inline logo + the file) and sending it over STARTTLS + AUTH to the
     local sink (common.py), as the dispatcher does with the bytes it loaded from the store;
   - accepting: validating the POST body (base64 in JSON, already read) into the request model.
   Target for sending: <= 3x the attachment's size.

    .venv/bin/python benchmarks/bench_templates.py [--messages 5000] [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib
import json
import os
import time
import tracemalloc
from typing import Any

from common import Sink, mail_env, make_tls, render_project, workspace

TARGET_RENDER_RATE = 2000.0
TARGET_SEND_PEAK_RATIO = 3.0
ATTACHMENT_BYTES = 10 * 1024 * 1024


def render_rates(package: str, count: int) -> dict[str, float]:
    """Messages per second: templates rendered, and whole emails composed (rendering included)."""
    notifications = importlib.import_module(f"{package}.notifications")
    settings = importlib.import_module(f"{package}.notifications.settings").MessageSettings()
    composer = notifications.Composer.load(settings, service_name="Bench", sender="bench@example.com")
    template = composer.templates.get("welcome")
    data = template.source.example
    service = {"service_name": "Bench", "notification_id": "0" * 32, "notification_ref": "0" * 8}
    started = time.perf_counter()
    for _ in range(count):
        template.render(data, "de-CH", service)
    render = count / (time.perf_counter() - started)
    drafts = [
        notifications.Notification.model_construct(
            id=f"{index:032x}",
            to=[f"user{index}@example.com"],
            cc=[],
            reply_to=None,
            subject=None,
            body=None,
            template="welcome",
            data=data,
            locale="de-CH",
            format="html",
            bulk=False,
        )
        for index in range(count)
    ]
    started = time.perf_counter()
    for draft in drafts:
        composer.compose(draft)
    compose = count / (time.perf_counter() - started)
    return {"render_per_s": render, "compose_per_s": compose}


def send_peak(package: str, pdf: bytes) -> float:
    """Peak bytes allocated while the email with `pdf` attached is built and sent (`pdf` itself excluded)."""
    mail = importlib.import_module(f"{package}.mail")
    notifications = importlib.import_module(f"{package}.notifications")
    settings = importlib.import_module(f"{package}.notifications.settings").MessageSettings()
    composer = notifications.Composer.load(settings, service_name="Bench", sender="bench@example.com")
    draft = notifications.Notification.model_construct(
        id="f" * 32,
        to=["ada@example.com"],
        cc=[],
        reply_to=None,
        subject="Invoice",
        body="Attached.",
        template=None,
        data={},
        locale=None,
        format="html",
        bulk=False,
    )

    async def run() -> int:
        async with mail.Mailer(mail.MailSettings()) as mailer:
            await mailer.send(composer.compose(draft).message)  # warm: session, TLS, imports
            gc.collect()
            tracemalloc.start()
            composed = composer.compose(draft, [mail.Attachment("invoice.pdf", "application/pdf", pdf)])
            await mailer.send(composed.message, attachments=composed.parts)
            del composed
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return peak

    return float(asyncio.run(run()))


def accept_peak(package: str, pdf: bytes) -> float:
    """Peak bytes allocated while a POST body carrying `pdf` (already read) is validated."""
    notifications = importlib.import_module(f"{package}.notifications")
    body = json.dumps(
        {
            "to": ["ada@example.com"],
            "subject": "Invoice",
            "body": "Attached.",
            "attachments": [
                {
                    "filename": "invoice.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(pdf).decode(),
                }
            ],
        }
    ).encode()
    gc.collect()
    tracemalloc.start()
    request = notifications.NotificationRequest.model_validate_json(body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert request.attachments[0].content == pdf
    return float(peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    with workspace("bench-templates-") as folder:
        project = render_project(folder)
        tls = make_tls(folder)
        with Sink(tls) as sink:
            os.environ.update(mail_env(sink, tls))
            rates = render_rates(project.package, args.messages)
            pdf = b"%PDF-1.4\n" + os.urandom(ATTACHMENT_BYTES - 9)
            sending = send_peak(project.package, pdf)
            accepting = accept_peak(project.package, pdf)
    results: dict[str, Any] = {
        **rates,
        "attachment_bytes": ATTACHMENT_BYTES,
        "send_peak_bytes": sending,
        "send_peak_ratio": sending / ATTACHMENT_BYTES,
        "accept_peak_bytes": accepting,
        "accept_peak_ratio": accepting / ATTACHMENT_BYTES,
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"templates rendered (welcome, de-CH -> de), one core: {rates['render_per_s']:8.0f} msg/s")
        print(f"emails composed (render + fastapi-mail message):     {rates['compose_per_s']:8.0f} msg/s")
        print(
            f"10 MB attachment, building and sending: peak {sending / 2**20:6.1f} MiB = {results['send_peak_ratio']:.2f}x"
        )
        print(
            f"10 MB attachment, validating the POST:  peak {accepting / 2**20:6.1f} MiB = {results['accept_peak_ratio']:.2f}x"
        )
    missed = rates["render_per_s"] < TARGET_RENDER_RATE or results["send_peak_ratio"] > TARGET_SEND_PEAK_RATIO
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
