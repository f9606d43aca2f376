"""The DKIM signers: sign (RFC 6376, RFC 8463) the exact bytes that go on the wire, with one or more keys.

`sign_message` adds one DKIM-Signature per `DkimSigner` (an RSA and an Ed25519 key together, as
RFC 8463 advises: receivers that do not know Ed25519, such as SpamAssassin's Mail::DKIM, verify the
RSA one). The headers a forger would add (From, To, Cc, Subject, Date, Message-ID, Reply-To) are
listed in h= once more than they occur (RFC 6376 8.15), so a second Subject or a Cc added on the way
breaks the signature. The headers and the body are canonicalized (relaxed/relaxed) once for every
key, with a few regular expressions: the same bytes as dkimpy's canonicalization at a third of its
cost. dkimpy folds the DKIM-Signature header, and verifies in the tests and the deliverability
check. The private-key operation runs in `cryptography` (OpenSSL), about 20 times faster than
dkimpy's pure-Python RSA. Signing stays on the event loop: handing the RSA operation to a worker
thread was measured slower (benchmarks/README.md). Keys: RSA of at least 2048 bits or Ed25519,
unencrypted PEM in PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY") form.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dkim  # type: ignore[import-untyped]  # dkimpy ships no types
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

__all__ = [
    "MIN_RSA_BITS",
    "OVERSIGNED_HEADERS",
    "SIGNED_HEADERS",
    "DkimKeyError",
    "DkimSigner",
    "generate_key",
    "load_key",
    "sign_message",
]

MIN_RSA_BITS = 2048

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"reply-to",
)
"""Signed when present, in this order."""

OVERSIGNED_HEADERS = frozenset({b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to"})
"""Listed in h= once more than they occur, present or not (RFC 6376 8.15): the extra entry signs the field's
absence, so one added later (a second Subject, a Cc) fails verification."""

_SIGNED_SET = frozenset(SIGNED_HEADERS)
_HEADER = b"DKIM-Signature"
_B_WIDTH = 72
_FIELD_START = re.compile(rb"\r\n(?![ \t])")
_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimKeyError(ValueError):
    """A private key that cannot sign DKIM; the message never contains key material."""


def load_key(pem: bytes) -> PrivateKey:
    """The private key in `pem`, refused unless it is RSA of 2048+ bits or Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise DkimKeyError("is an encrypted private key: DKIM needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimKeyError(
            "is not a PEM private key (PKCS#1 or PKCS#8, unencrypted): generate one with dkim-keygen"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(
                f"is a {key.key_size}-bit RSA key, which receivers reject: "
                f"use RSA of {MIN_RSA_BITS} bits or more, or Ed25519"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimKeyError(f"is a {type(key).__name__} key: DKIM needs RSA ({MIN_RSA_BITS}+ bits) or Ed25519")


def generate_key(algorithm: str = "rsa", bits: int = MIN_RSA_BITS) -> PrivateKey:
    """A new private key: RSA of `bits` bits, or Ed25519."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if bits < MIN_RSA_BITS:
        raise DkimKeyError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: PrivateKey) -> bytes:
    """`key` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for `domain` with the key published at `selector._domainkey.domain`."""

    domain: str
    selector: str
    key: PrivateKey = field(repr=False)

    @property
    def algorithm(self) -> bytes:
        """The a= tag: rsa-sha256 or ed25519-sha256."""
        return b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"

    @property
    def record_name(self) -> str:
        """The DNS name of the public key record."""
        return f"{self.selector}._domainkey.{self.domain}"

    def public_key(self) -> str:
        """The p= value to publish: base64 of the DER public key (RSA) or the raw 32 bytes (Ed25519)."""
        public = self.key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return base64.b64encode(raw).decode()

    def dns_record(self) -> str:
        """The TXT record value to publish at `record_name`."""
        kind = "ed25519" if self.algorithm == b"ed25519-sha256" else "rsa"
        return f"v=DKIM1; k={kind}; p={self.public_key()}"

    def sign(self, data: bytes) -> bytes:
        """`data` as sent, with this key's DKIM-Signature prepended (see `sign_message`)."""
        return sign_message(data, (self,))

    def signature(self, names: bytes, headers: bytes, body_hash: bytes, timestamp: bytes) -> bytes:
        """This key's DKIM-Signature field (with its CRLF) over the signed `headers` (canonical, in the order of
        `names`, the h= value) and the body's hash. b= goes last, on lines of its own."""
        tags = b"v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s; t=%s; h=%s; bh=%s;" % (
            self.algorithm,
            self.domain.encode(),
            self.selector.encode(),
            timestamp,
            names,
            body_hash,
        )
        value: bytes = dkim.fold(tags, namelen=len(_HEADER), linesep=b"\r\n")
        if value.replace(b"\r\n ", b" ") == tags:  # folded at spaces only: unfolded, it is `tags` again
            unsigned = b"dkim-signature:" + tags + b" b="  # its relaxed form, b= empty, without line end
        else:
            unsigned = _relaxed_header(_HEADER, b" " + value + b" b=")
        signature = base64.b64encode(self._sign_digest(hashlib.sha256(headers + unsigned).digest()))
        lines = [signature[start : start + _B_WIDTH] for start in range(0, len(signature), _B_WIDTH)]
        return _HEADER + b": " + value + b"\r\n b=" + b"\r\n ".join(lines) + b"\r\n"

    def _sign_digest(self, digest: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(digest)  # RFC 8463: Ed25519 over the SHA-256 digest
        return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def sign_message(data: bytes, signers: Sequence[DkimSigner]) -> bytes:
    """`data` (a serialized message) as sent: CRLF line ends, one DKIM-Signature per signer prepended, in order.

    A bare CR or LF becomes CRLF here, as aiosmtplib would do on the wire, so the signed bytes are
    the bytes sent. The headers and the body are canonicalized and hashed once for all signers.
    """
    lines = _crlf(data)
    head, _, body = lines.partition(b"\r\n\r\n")
    names, headers = _signed_headers(head)
    body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
    timestamp = str(int(time.time())).encode()
    return b"".join([signer.signature(names, headers, body_hash, timestamp) for signer in signers]) + lines


def _signed_headers(head: bytes) -> tuple[bytes, bytes]:
    """The h= value, and the fields it signs in relaxed form, each with its CRLF, in h= order.

    A name listed n times signs its last n instances, bottom up (RFC 6376 5.4.2); an entry past the
    instances present signs nothing, so a field added later changes what that entry signs.
    """
    found: dict[bytes, list[bytes]] = {}
    for line in _FIELD_START.split(head):
        name, _, value = line.partition(b":")
        if (key := name.lower().rstrip()) in _SIGNED_SET:
            found.setdefault(key, []).append(value)
    names: list[bytes] = []
    signed: list[bytes] = []
    for name in SIGNED_HEADERS:
        values = found.get(name, [])
        if name in OVERSIGNED_HEADERS:
            names += [name] * (len(values) + 1)
            signed += [_relaxed_header(name, value) + b"\r\n" for value in reversed(values)]
        elif values:  # signed when present: its last instance
            names.append(name)
            signed.append(_relaxed_header(name, values[-1]) + b"\r\n")
    return b" : ".join(names), b"".join(signed)  # folded only at the spaces around colons (RFC 6376 3.5)


def _crlf(data: bytes) -> bytes:
    """`data` with every line ending (CRLF, a bare LF, a bare CR) made CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """A header field in relaxed canonical form (RFC 6376, 3.4.2), without its line end."""
    return name.lower().rstrip() + b":" + _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip()


def _relaxed_body(body: bytes) -> bytes:
    """A body (CRLF line ends) in relaxed canonical form (RFC 6376, 3.4.4)."""
    lines = _WSP.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
    end = len(lines)
    while lines.endswith(b"\r\n", 0, end):  # empty lines at the end do not count
        end -= 2
    return lines[:end] + b"\r\n" if end else b""
