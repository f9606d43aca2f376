"""Signing settings: the DKIM domain, its selectors and their private keys (`MAIL_DKIM_*`); unset, nothing is signed.

`MAIL_DKIM_SELECTOR` and `MAIL_DKIM_PRIVATE_KEY_FILE` may each list several, comma-separated, paired in
order: every message then carries one signature per pair (RSA and Ed25519 together, RFC 8463).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from ..core.settings import SmtpSettings, key_file_warning
from ..extras import missing

if TYPE_CHECKING:  # a type only: dkim.py (and dkimpy) is imported when signing is on
    from .dkim import DkimSigner

__all__ = ["SigningSettings"]

_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*"
)
"""A selector is one or more DNS labels (RFC 6376 3.1)."""


class SigningSettings(SmtpSettings):
    """`SmtpSettings` plus the DKIM keys to sign with."""

    dkim_domain: str = Field(
        default="",
        description="DKIM signing domain (d=): MAIL_FROM's domain or a parent of it. Empty: no signing.",
    )
    dkim_selector: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="DKIM selector (s=), the key published at SELECTOR._domainkey.DOMAIN; several, comma-separated, "
        "one per key in MAIL_DKIM_PRIVATE_KEY_FILE's order (RSA and Ed25519 together: rsa1,ed1).",
    )
    dkim_private_key_file: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="PEM file of the DKIM private key (RSA 2048+ bits or Ed25519; `dkim-keygen` writes one); "
        "several, comma-separated, one per selector: each message is signed with every key.",
    )
    dkim_private_key: SecretStr = Field(
        default=SecretStr(""),
        description="One DKIM private key as PEM text, instead of MAIL_DKIM_PRIVATE_KEY_FILE; never printed.",
    )

    @field_validator("dkim_selector", "dkim_private_key_file", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return (value,) if isinstance(value, Path) else value

    def problems(self) -> list[str]:
        """The core's problems, then what keeps DKIM from signing; loads the keys once."""
        return [*super().problems(), *self._dkim_problems()]

    def warnings(self) -> list[str]:
        """The core's warnings, key files other users can read, and signing that some receivers cannot verify."""
        found = [*super().warnings()]
        found += filter(
            None,
            (key_file_warning("MAIL_DKIM_PRIVATE_KEY_FILE", path) for path in self.dkim_private_key_file),
        )
        signers = self.dkim_signers
        if signers and all(signer.algorithm == b"ed25519-sha256" for signer in signers):
            found.append(
                "MAIL_DKIM_SELECTOR signs with Ed25519 only, which receivers using Mail::DKIM (SpamAssassin, amavis) "
                "cannot verify: add an RSA key (dkim-keygen --algorithm rsa) and list both (RFC 8463)"
            )
        return found

    @cached_property
    def dkim_signers(self) -> tuple[DkimSigner, ...]:
        """One signer per selector and its key, RSA first (a verifier that reads only the first signature then
        finds one it knows); empty when MAIL_DKIM_DOMAIN is unset. Raises `DkimKeyError` naming each bad key."""
        if not self.dkim_domain:
            return ()
        from .dkim import DkimKeyError, DkimSigner, load_key

        domain = self.dkim_domain.lower().rstrip(".")
        signers: list[DkimSigner] = []
        errors: list[str] = []
        for selector, (variable, read) in zip(self.dkim_selector, self._dkim_keys(), strict=True):
            try:
                signers.append(DkimSigner(domain, selector, load_key(read())))
            except DkimKeyError as error:
                errors.append(f"{variable} (selector {selector}) {error}")
            except OSError as error:
                reason = error.strerror or type(error).__name__
                errors.append(
                    f"{variable} (selector {selector}) could not be read ({reason}): check the path"
                )
        if errors:
            raise DkimKeyError("; ".join(errors))
        return tuple(sorted(signers, key=lambda signer: signer.algorithm != b"rsa-sha256"))

    def dkim_sign(self) -> Callable[[bytes], bytes] | None:
        """Signs a serialized message with every key (one DKIM-Signature each); None when not signing."""
        if not self.dkim_signers:
            return None
        from .dkim import sign_message

        return functools.partial(sign_message, signers=self.dkim_signers)

    def _dkim_keys(self) -> list[tuple[str, Callable[[], bytes]]]:
        """Each key's variable (a file by its path) and how to read its PEM, in order."""
        if self.dkim_private_key_file:
            return [
                (f"MAIL_DKIM_PRIVATE_KEY_FILE={path}", path.read_bytes) for path in self.dkim_private_key_file
            ]
        text = self.dkim_private_key.get_secret_value()
        return [("MAIL_DKIM_PRIVATE_KEY", lambda: text.replace("\\n", "\n").encode())] if text else []

    def _dkim_problems(self) -> list[str]:
        keys = self._dkim_keys()
        if not (self.dkim_domain or self.dkim_selector or keys):
            return []
        missing_names = [
            name
            for name, value in (
                ("MAIL_DKIM_DOMAIN", self.dkim_domain),
                ("MAIL_DKIM_SELECTOR", self.dkim_selector),
            )
            if not value
        ]
        if not keys:
            missing_names.append("MAIL_DKIM_PRIVATE_KEY_FILE (or MAIL_DKIM_PRIVATE_KEY)")
        if missing_names:
            return [
                f"DKIM signing needs {' and '.join(missing_names)} too (or unset every MAIL_DKIM_* variable)"
            ]
        if self.dkim_private_key_file and self.dkim_private_key.get_secret_value():
            return ["set MAIL_DKIM_PRIVATE_KEY_FILE or MAIL_DKIM_PRIVATE_KEY, not both"]
        problems = self._selector_problems(len(keys))
        domain = self.dkim_domain.lower().rstrip(".")
        from_domain = str(self.from_address).rpartition("@")[2].lower()
        if from_domain != domain and not from_domain.endswith("." + domain):
            problems.append(
                f"MAIL_DKIM_DOMAIN={self.dkim_domain} does not align with MAIL_FROM's domain {from_domain}, "
                "so DMARC ignores the signature: set MAIL_DKIM_DOMAIN to that domain (or a parent of it)"
            )
        if problems:
            return problems
        not_installed = missing("dkim", "MAIL_DKIM_DOMAIN")
        return [not_installed] if not_installed else self._key_problems()

    def _selector_problems(self, keys: int) -> list[str]:
        """Selectors that are not DNS labels or come twice, and a count that does not match the keys'."""
        selectors = self.dkim_selector
        problems = [
            f"MAIL_DKIM_SELECTOR: {selector!r} is not a DNS name (letters, digits, '-' and '_', labels joined by '.')"
            for selector in selectors
            if not _SELECTOR.fullmatch(selector)
        ]
        twice = sorted({selector for selector in selectors if selectors.count(selector) > 1})
        if twice:
            problems.append(
                f"MAIL_DKIM_SELECTOR lists {', '.join(twice)} twice: give each key its own selector"
            )
        if len(selectors) != keys:
            variable = "MAIL_DKIM_PRIVATE_KEY_FILE" if self.dkim_private_key_file else "MAIL_DKIM_PRIVATE_KEY"
            problems.append(
                f"MAIL_DKIM_SELECTOR lists {len(selectors)} selector(s) ({', '.join(selectors)}) but {variable} "
                f"{keys} key(s): give one key per selector, comma-separated in the same order"
                + ("" if self.dkim_private_key_file else " (several keys: MAIL_DKIM_PRIVATE_KEY_FILE)")
            )
        return problems

    def _key_problems(self) -> list[str]:
        from .dkim import DkimKeyError

        try:
            self.dkim_signers  # noqa: B018 - loads and caches the keys
        except DkimKeyError as error:
            return [str(error)]
        return []
