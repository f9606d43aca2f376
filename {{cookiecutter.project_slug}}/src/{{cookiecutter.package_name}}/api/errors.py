"""422 answers that name what is wrong and where, without echoing the input back."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_REPORTED_ERRORS = 20


def install(app: FastAPI) -> None:
    """Answer validation errors with their type, location and message only."""
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """At most MAX_REPORTED_ERRORS errors, each without the `input` and `ctx` FastAPI would include."""
    detail = [
        {"type": item["type"], "loc": list(item["loc"]), "msg": item["msg"]}
        for item in error.errors()[:MAX_REPORTED_ERRORS]
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
