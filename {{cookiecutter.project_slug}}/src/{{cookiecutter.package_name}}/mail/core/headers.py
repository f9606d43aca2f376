"""What a header value may contain: no control character, no line break, no lone surrogate.

Header values come from callers (subjects, names) and settings (`MAIL_FROM_NAME`). The email
package folds headers on every `str.splitlines()` boundary (VT, FF, FS, GS, RS, NEL, U+2028,
U+2029 besides CR and LF), so any of them would start a new header line on the wire.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["HeaderText", "header_problem"]

_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into an email header, or None when it can (TAB is allowed)."""
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    char = found.group()
    kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character or line break"
    return f"must not contain {kind} (U+{ord(char):04X} at position {found.start()}; header injection)"


def _checked(value: str) -> str:
    problem = header_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


HeaderText = Annotated[str, AfterValidator(_checked)]
"""A `str` field that must be fit for an email header (pydantic refuses it with `header_problem`)."""
