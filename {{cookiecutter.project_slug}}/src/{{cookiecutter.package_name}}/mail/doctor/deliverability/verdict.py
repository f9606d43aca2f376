"""A deliverability verdict on one DNS record: how it stands, what was found, what to change."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Status", "Verdict", "deliverability_exit_code", "render_verdicts"]


class Status(StrEnum):
    """How a record stands."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    PROBLEM = "problem"
    DNS_FAILURE = "dns_failure"


@dataclass(frozen=True)
class Verdict:
    """One record's verdict: `message` says what was found, `fix` what to change."""

    record: str
    status: Status
    message: str
    fix: str = ""


def render_verdicts(domain: str, verdicts: list[Verdict]) -> str:
    """The verdicts for people: one line each, and the fix under each that needs one."""
    lines = [f"deliverability of {domain}:"]
    for verdict in verdicts:
        lines.append(f"  {verdict.record:<8} {verdict.status.value.upper()}: {verdict.message}")
        if verdict.fix and verdict.status not in {Status.OK, Status.INFO}:
            lines.append(f"  {'':<8} fix: {verdict.fix}")
    return "\n".join(lines)


def deliverability_exit_code(verdicts: list[Verdict]) -> int:
    """0 when nothing stands in the way, 50 for a record to fix, 51 when DNS lookups failed."""
    if any(verdict.status is Status.PROBLEM for verdict in verdicts):
        return 50
    if any(verdict.status is Status.DNS_FAILURE for verdict in verdicts):
        return 51
    return 0
