"""The naive app bench_e2e.py compares against: BackgroundTasks + FastMail.send_message per notification.

It is the pattern fastapi-mail's documentation shows, with the same API as the generated service
(POST /notifications, bearer key, 202 {"id", "status"}, X-Notification-ID). Run it with
`uvicorn --factory naive_app:create_app`; it reads API_KEYS and the MAIL_* variables.
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated

from fastapi import BackgroundTasks, FastAPI, Header, HTTPException
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType
from pydantic import BaseModel, EmailStr


class NotificationIn(BaseModel):
    to: list[EmailStr]
    subject: str
    body: str


def create_app() -> FastAPI:
    keys = {key.strip() for key in os.environ["API_KEYS"].split(",")}
    fastmail = FastMail(
        ConnectionConfig(
            MAIL_SERVER=os.environ["MAIL_SERVER"],
            MAIL_PORT=int(os.environ["MAIL_PORT"]),
            MAIL_USERNAME=os.environ["MAIL_USERNAME"],
            MAIL_PASSWORD=os.environ["MAIL_PASSWORD"],
            MAIL_FROM=os.environ["MAIL_FROM"],
            MAIL_STARTTLS=True,
            MAIL_SSL_TLS=False,
            CERT_BUNDLE=os.environ["MAIL_CERT_BUNDLE"],
        )
    )
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/notifications", status_code=202)
    async def notify(
        notification: NotificationIn,
        background: BackgroundTasks,
        authorization: Annotated[str, Header()] = "",
    ) -> dict[str, str]:
        if authorization.removeprefix("Bearer ") not in keys:
            raise HTTPException(401, "invalid API key")
        notification_id = uuid.uuid4().hex
        message = MessageSchema(
            subject=notification.subject,
            recipients=notification.to,
            body=notification.body,
            subtype=MessageType.plain,
            headers={"X-Notification-ID": notification_id},
        )
        background.add_task(fastmail.send_message, message)
        return {"id": notification_id, "status": "queued"}

    return app
