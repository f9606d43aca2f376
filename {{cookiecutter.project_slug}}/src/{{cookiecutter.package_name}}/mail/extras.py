"""The optional features' packages: what each needs, and the one line that says how to install it.

Sending with a password needs only the core packages (fastapi-mail, aiosmtplib, pydantic,
pydantic-settings). OAuth2 sign-in, DKIM signing and the deliverability check import their own
packages only when they are turned on; `missing` names what is not installed and the exact
`pip install` that fixes it. The service's `pyproject.toml` has an extra of each name (a template
test keeps them in step).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["CORE", "EXTRAS", "Extra", "missing"]

CORE = ("fastapi-mail>=1.6.8,<2", "aiosmtplib>=5.1,<6", "pydantic>=2.7,<3", "pydantic-settings>=2.7,<3")
"""What the package always needs (fastapi-mail brings email-validator with idna, jinja2, httpx and cryptography)."""


@dataclass(frozen=True)
class Extra:
    """An optional feature: the modules it imports and the requirements that provide them."""

    modules: tuple[str, ...]
    requirements: tuple[str, ...]


EXTRAS = {
    "oauth": Extra(("authlib",), ("authlib>=1.6.5,<1.7",)),
    "dkim": Extra(("dkim",), ("dkimpy>=1.1.8,<2",)),
    "deliverability": Extra(("dns", "dkim", "nacl"), ("dnspython>=2.6,<3", "dkimpy[ed25519]>=1.1.8,<2")),
}


def missing(extra: str, turned_on_by: str) -> str | None:
    """None when `extra`'s packages are installed; else one line: what `turned_on_by` needs and how to install it."""
    wanted = EXTRAS[extra]
    absent = [module for module in wanted.modules if importlib.util.find_spec(module) is None]
    if not absent:
        return None
    install = " ".join(f"'{requirement}'" for requirement in wanted.requirements)
    return f"{turned_on_by} needs {', '.join(absent)}, which is not installed: pip install {install}"
