"""How long to wait before a retry: exponential backoff with jitter, the one formula of the service."""

from __future__ import annotations

import math
import random

__all__ = ["backoff"]


def backoff(attempt: int, base: float, cap: float = math.inf) -> float:
    """Seconds before retry `attempt` (1 for the first): `base * 2**(attempt-1)`, +-50% jitter, at most `cap`."""
    jitter = random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography
    return float(min(base * 2.0 ** max(attempt - 1, 0) * jitter, cap))
