"""Signing settings: the DKIM domain, selector and private key (`MAIL_DKIM_*`); unset, nothing is signed."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from pydantic import Field, FilePath, SecretStr

from ..core.settings import SmtpSettings
from ..extras import missing

if TYPE_CHECKING:  # a type only: dkim.py (and dkimpy) is imported when signing is on
    from .dkim import DkimSigner

__all__ = ["SigningSettings"]


class SigningSettings(SmtpSettings):
    """`SmtpSettings` plus the DKIM key to sign with."""

    dkim_domain: str = Field(
        default="",
        description="DKIM signing domain (d=): MAIL_FROM's domain or a parent of it. Empty: no signing.",
    )
    dkim_selector: str = Field(
        default="", description="DKIM selector (s=): the key is published at SELECTOR._domainkey.DOMAIN."
    )
    dkim_private_key_file: FilePath | None = Field(
        default=None,
        description="PEM file of the DKIM private key (RSA 2048+ bits or Ed25519; `dkim-keygen` writes one).",
    )
    dkim_private_key: SecretStr = Field(
        default=SecretStr(""),
        description="The DKIM private key as PEM text, instead of MAIL_DKIM_PRIVATE_KEY_FILE; never printed.",
    )

    def problems(self) -> list[str]:
        """The core's problems, then what keeps DKIM from signing; loads the key once."""
        return [*super().problems(), *self._dkim_problems()]

    @cached_property
    def dkim_signer(self) -> DkimSigner | None:
        """The DKIM signer, or None when MAIL_DKIM_DOMAIN is unset. Raises `DkimKeyError`."""
        if not self.dkim_domain:
            return None
        from .dkim import DkimSigner, load_key

        if self.dkim_private_key_file is not None:
            pem = self.dkim_private_key_file.read_bytes()
        else:
            pem = self.dkim_private_key.get_secret_value().replace("\\n", "\n").encode()
        return DkimSigner(self.dkim_domain.lower().rstrip("."), self.dkim_selector, load_key(pem))

    def _dkim_problems(self) -> list[str]:
        key_set = self.dkim_private_key_file is not None or bool(self.dkim_private_key.get_secret_value())
        if not (self.dkim_domain or self.dkim_selector or key_set):
            return []
        missing_names = [
            name
            for name, value in (
                ("MAIL_DKIM_DOMAIN", self.dkim_domain),
                ("MAIL_DKIM_SELECTOR", self.dkim_selector),
            )
            if not value
        ]
        if not key_set:
            missing_names.append("MAIL_DKIM_PRIVATE_KEY_FILE (or MAIL_DKIM_PRIVATE_KEY)")
        if missing_names:
            return [
                f"DKIM signing needs {' and '.join(missing_names)} too (or unset every MAIL_DKIM_* variable)"
            ]
        if self.dkim_private_key_file is not None and self.dkim_private_key.get_secret_value():
            return ["set MAIL_DKIM_PRIVATE_KEY_FILE or MAIL_DKIM_PRIVATE_KEY, not both"]
        domain = self.dkim_domain.lower().rstrip(".")
        from_domain = str(self.from_address).rpartition("@")[2].lower()
        if from_domain != domain and not from_domain.endswith("." + domain):
            return [
                f"MAIL_DKIM_DOMAIN={self.dkim_domain} does not align with MAIL_FROM's domain {from_domain}, "
                "so DMARC ignores the signature: set MAIL_DKIM_DOMAIN to that domain (or a parent of it)"
            ]
        not_installed = missing("dkim", "MAIL_DKIM_DOMAIN")
        if not_installed:
            return [not_installed]
        return self._key_problems()

    def _key_problems(self) -> list[str]:
        from .dkim import DkimKeyError

        variable = (
            "MAIL_DKIM_PRIVATE_KEY_FILE"
            if self.dkim_private_key_file is not None
            else "MAIL_DKIM_PRIVATE_KEY"
        )
        try:
            self.dkim_signer  # noqa: B018 - loads and caches the key
        except DkimKeyError as error:
            return [f"{variable} {error}"]
        except OSError as error:
            return [
                f"{variable} could not be read ({type(error).__name__}): check the path and its permissions"
            ]
        return []
