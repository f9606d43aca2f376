"""Diagnose the SMTP settings: connect, TLS and login, then say exactly what to change.

The parts: `diagnosis` (the `Problem` classes, their exit codes, `Diagnosis`), `probe`
(the SMTP dialogue), `advice` (what each provider expects of a login). `check_mail_command`
is the `check-mail` command, also for an app that copied this package.
"""

from __future__ import annotations

import asyncio
import sys

from .advice import login_advice
from .diagnosis import Diagnosis, Problem, render_diagnosis, settings_diagnosis
from .probe import probe
from .settings import MailSettings, SettingsError, load_settings, security_warnings

__all__ = [
    "Diagnosis",
    "Problem",
    "check_mail_command",
    "login_advice",
    "probe",
    "render_diagnosis",
    "settings_diagnosis",
]


def check_mail_command(json_output: bool = False) -> int:
    """`check-mail`: load MailSettings, probe the server, print the diagnosis; returns the exit code."""
    try:
        settings = load_settings(MailSettings)
    except SettingsError as error:
        diagnosis = settings_diagnosis(error)
    else:
        for warning in security_warnings(settings):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        diagnosis = asyncio.run(probe(settings))
    print(render_diagnosis(diagnosis, json_output), flush=True)
    return diagnosis.exit_code
