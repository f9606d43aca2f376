"""Attachments and inline images added to a message fastapi-mail built, their bytes base64-encoded only once.

fastapi-mail nests attachments inside `multipart/related`, and encodes each file into a str that the
generator copies twice more. Here the message becomes `multipart/mixed` (the body, then the files)
around `multipart/related` (the HTML, then its inline images) around `multipart/alternative`, as
needed. Each part is serialized with a placeholder, then spliced: the file's bytes are encoded in
blocks straight into the one buffer that holds the whole message, with CRLF line ends throughout.
A 10 MB file thus costs its own bytes plus the ~13.7 MB of the message, not several copies of it.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.mime.multipart import MIMEMultipart

__all__ = ["Attachment", "add_parts", "splice"]

_BLOCK = 57 * 1024
"""Bytes encoded at a time: 1024 base64 lines of 76 characters."""
_ENVELOPE_HEADERS = frozenset({"content-type", "mime-version", "content-transfer-encoding"})


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message. With `content_id`, an inline part the HTML shows as `cid:<content_id>`.

    `filename` is sent as given (RFC 2231-encoded when not ASCII): sanitise it before.
    """

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


def _part(attachment: Attachment, token: str) -> Message:
    part = Message()
    part["Content-Type"] = attachment.content_type
    name: str | tuple[str, str, str] = attachment.filename
    if not attachment.filename.isascii():
        name = ("utf-8", "", attachment.filename)  # RFC 2231: filename*=utf-8''...
    part.add_header("Content-Disposition", "inline" if attachment.content_id else "attachment", filename=name)
    if attachment.content_id:
        part["Content-ID"] = f"<{attachment.content_id}>"
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(token)
    return part


def _rewrap(top: Message, subtype: str) -> Message:
    """A new `multipart/<subtype>` holding `top`, the message headers moved onto it."""
    wrapper = MIMEMultipart(subtype)
    for name, value in top.items():
        if name.lower() not in _ENVELOPE_HEADERS:
            wrapper[name] = value
    for name in {name.lower() for name in top} - _ENVELOPE_HEADERS:
        del top[name]
    del top["MIME-Version"]
    wrapper.attach(top)
    return wrapper


def add_parts(message: Message, attachments: Sequence[Attachment]) -> tuple[Message, dict[bytes, bytes]]:
    """`message` with `attachments` as parts holding placeholders, and each placeholder's content (for `splice`).

    Inline parts join the `multipart/related` fastapi-mail makes around an HTML body (a text-only
    message drops them); files go into a `multipart/mixed` around the body.
    """
    contents: dict[bytes, bytes] = {}

    def placeholder(attachment: Attachment) -> Message:
        token = f"=_part{uuid.uuid4().hex}"  # "=_" never occurs in base64, nor in any part's own text
        contents[token.encode()] = attachment.data
        return _part(attachment, token)

    inline = [each for each in attachments if each.content_id]
    files = [each for each in attachments if not each.content_id]
    top = message
    if top.get_content_type() == "multipart/related":
        for attachment in inline:
            top.attach(placeholder(attachment))
        if not inline and len(top.get_payload()) == 1:  # no image: the related container has no purpose
            top = _unwrap(top)
    if files and top.get_content_type() != "multipart/mixed":
        top = _rewrap(top, "mixed")
    for attachment in files:
        top.attach(placeholder(attachment))
    return top, contents


def _unwrap(related: Message) -> Message:
    """The only part of `related`, the message headers moved onto it."""
    inner = related.get_payload(0)
    assert isinstance(inner, Message)
    for name, value in related.items():
        if name.lower() not in _ENVELOPE_HEADERS:
            inner[name] = value
    inner["MIME-Version"] = "1.0"
    return inner


def _encoded_size(size: int) -> int:
    """Bytes of `size` bytes in base64 lines of 76 characters joined by CRLF (none after the last)."""
    full, rest = divmod(size, 57)
    lines = full + (1 if rest else 0)
    return full * 76 + (4 * ((rest + 2) // 3) if rest else 0) + 2 * max(lines - 1, 0)


def splice(data: bytes, contents: Mapping[bytes, bytes]) -> bytearray:
    """`data` with CRLF line ends and each placeholder of `contents` replaced by its content in base64 lines."""
    found = sorted((data.index(token), token) for token in contents)
    texts, position = [], 0
    for at, token in found:
        texts.append(data[position:at].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        position = at + len(token)
    texts.append(data[position:].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    size = sum(map(len, texts)) + sum(_encoded_size(len(contents[token])) for _, token in found)
    out = bytearray(size)
    view, cursor = memoryview(out), 0
    for index, text in enumerate(texts):
        view[cursor : cursor + len(text)] = text
        cursor += len(text)
        if index < len(found):
            raw = memoryview(contents[found[index][1]])
            for start in range(0, len(raw), _BLOCK):
                lines = binascii.b2a_base64(raw[start : start + _BLOCK], newline=False)
                block = b"\r\n".join(lines[offset : offset + 76] for offset in range(0, len(lines), 76))
                last = start + _BLOCK >= len(raw)
                chunk = block if last else block + b"\r\n"
                view[cursor : cursor + len(chunk)] = chunk
                cursor += len(chunk)
    view.release()
    assert cursor == size, "base64 size miscounted"
    return out
