"""Attachments as callers send them: base64 in JSON, checked (size, type, name) before anything is stored."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Sequence

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field

__all__ = ["MAX_FILENAME_BYTES", "AttachmentIn", "attachment_problems", "sanitized_filename"]

MAX_FILENAME_BYTES = 150
"""Longer names are shortened (keeping the extension): RFC 2231-encoded, one stays well within a header line."""
CONTENT_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}$"
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


class AttachmentIn(BaseModel):
    """A file to attach: its name, its content type and its content in base64."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str = Field(min_length=1, max_length=1000, description="File name shown to the recipient.")
    content_type: str = Field(pattern=CONTENT_TYPE, description="MIME type, such as application/pdf.")
    content: Base64Bytes = Field(description="The file's bytes, base64-encoded.")


def sanitized_filename(name: str) -> str:
    """`name` without folders, control or reserved characters and leading dots, NFC, at most
    MAX_FILENAME_BYTES in UTF-8 (the extension kept); `attachment` when nothing is left."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = " ".join(_UNSAFE.sub("_", base).split()).lstrip(".")
    stem, dot, extension = base.rpartition(".")
    if not dot or len(extension) > 16:
        stem, dot, extension = base, "", ""
    while len(f"{stem}{dot}{extension}".encode()) > MAX_FILENAME_BYTES and stem:
        stem = stem[:-1]
    cleaned = f"{stem.rstrip()}{dot}{extension}" if stem.strip() else ""
    return cleaned or "attachment"


def attachment_problems(
    attachments: Sequence[AttachmentIn], max_bytes: int, refused_types: Sequence[str]
) -> list[dict[str, object]]:
    """The 422 error entries for `attachments`: over `max_bytes` in total, or of a refused type (as declared,
    or as its file name's extension suggests)."""
    errors: list[dict[str, object]] = []
    total = sum(len(each.content) for each in attachments)
    if total > max_bytes:
        errors.append(
            {
                "type": "attachments_too_large",
                "loc": ("body", "attachments"),
                "msg": f"attachments are {total} bytes (decoded); at most {max_bytes} allowed (MAIL_MAX_ATTACHMENT_BYTES)",
            }
        )
    refused = {kind.lower() for kind in refused_types}
    for index, each in enumerate(attachments):
        guessed = mimetypes.guess_type(sanitized_filename(each.filename))[0] or ""
        kinds = {each.content_type.lower(), guessed.lower()} & refused
        if kinds:
            errors.append(
                {
                    "type": "attachment_type_refused",
                    "loc": ("body", "attachments", index),
                    "msg": f"{sorted(kinds)[0]} attachments are refused (MAIL_REFUSED_ATTACHMENT_TYPES)",
                }
            )
    return errors
