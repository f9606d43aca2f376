"""check-mail in one call: load the settings, probe the server, optionally judge the DNS records; what to print.

`check_mail()` is the one entry point of `python -m <package> check-mail` (with or without
`--deliverability`): settings that do not load are a `settings_invalid` diagnosis, the settings'
warnings (MAIL_VALIDATE_CERTS=false...) and the probe's go with every report, and the exit code covers
all of it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any

from ..core.loading import SettingsError, load_settings
from ..extras import missing
from ..settings import MailSettings
from .deliverability.verdict import Verdict, deliverability_exit_code, render_verdicts
from .diagnosis import Diagnosis, Problem, render_diagnosis, settings_diagnosis
from .probe import probe

__all__ = ["CheckReport", "check_mail"]


@dataclass(frozen=True)
class CheckReport:
    """What check-mail found: the probe's diagnosis, the settings' and the probe's warnings, and with
    `--deliverability` the DNS verdicts on `domain`."""

    diagnosis: Diagnosis
    warnings: tuple[str, ...] = ()
    domain: str = ""
    verdicts: tuple[Verdict, ...] | None = None
    """None: the DNS records were not checked."""

    @property
    def exit_code(self) -> int:
        """The probe's code when it failed, else 50 for a record to fix, 51 when DNS lookups failed, else 0."""
        if self.diagnosis.exit_code or self.verdicts is None:
            return self.diagnosis.exit_code
        return deliverability_exit_code(list(self.verdicts))

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the diagnosis, the report's exit code, the warnings, the verdicts under "deliverability"."""
        found = {**self.diagnosis.as_dict(), "exit_code": self.exit_code, "warnings": list(self.warnings)}
        if self.verdicts is not None:
            verdicts = [asdict(verdict) for verdict in self.verdicts]
            found["deliverability"] = {"domain": self.domain, "verdicts": verdicts}
        return found

    def render(self, json_output: bool = False) -> str:
        """The report as check-mail prints it on stdout: JSON, or lines for people (warnings go to stderr)."""
        if json_output:
            return json.dumps(self.as_dict())
        text = render_diagnosis(self.diagnosis)
        if self.verdicts is None:
            return text
        return f"{text}\n{render_verdicts(self.domain, list(self.verdicts))}"


def check_mail(deliverability: bool = False, **overrides: Any) -> CheckReport:
    """Probe the SMTP server of `MailSettings()` (`overrides` as for `load_settings`, e.g. `_env_file`);
    with `deliverability`, judge MAIL_FROM's domain's DNS records too."""
    try:
        settings = load_settings(MailSettings, **overrides)
    except SettingsError as error:
        return CheckReport(settings_diagnosis(error))
    if deliverability:
        not_installed = missing("deliverability", "check-mail --deliverability")
        if not_installed:
            return CheckReport(
                Diagnosis(Problem.SETTINGS_INVALID, not_installed, "install it, then run it again")
            )
    diagnosis = asyncio.run(probe(settings))
    warnings = (*settings.warnings(), *diagnosis.warnings)
    if not deliverability:
        return CheckReport(diagnosis, warnings)
    from .deliverability.report import check_deliverability

    domain = str(settings.from_address).rpartition("@")[2].lower()
    return CheckReport(diagnosis, warnings, domain, tuple(check_deliverability(settings)))
