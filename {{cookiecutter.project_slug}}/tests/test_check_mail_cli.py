"""`python -m {{ cookiecutter.package_name }} check-mail` as a real process: one diagnosis, its exit code, JSON, no password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }}.mail.doctor.diagnosis import Problem

from .raw_servers import listening, silent
from .smtp_server import PASSWORD, SmtpServer, commands_read, cram_md5_only_server, running_server

# aiosmtpd cannot tell that an implicit-TLS session is encrypted; the test server is meant to be so.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SOURCE_ROOT = Path({{ cookiecutter.package_name }}.__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float


def check_mail(cwd: Path, env: dict[str, str], *args: str) -> Run:
    """Run check-mail with exactly the MAIL_* variables in `env`, in `cwd` (which has no .env)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MAIL_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])
    )
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "check-mail", *args]
    started = time.monotonic()
    result = subprocess.run(
        command, env=environment | env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def startup_seconds(tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long the command takes when it stops before probing (settings missing): the baseline."""
    run = check_mail(tmp_path_factory.mktemp("baseline"), {})
    assert run.exit_code == Problem.SETTINGS_INVALID.exit_code, run
    assert "MAIL_SERVER is required" in run.stdout
    return run.seconds


@pytest.fixture
def implicit_tls_server(ca: trustme.CA, ca_file: Path) -> Iterator[SmtpServer]:
    with running_server(ca, ca_file, "implicit") as server:
        yield server


def assert_one_diagnosis(run: Run, expected: Problem, timeout: float, startup: float) -> str:
    """The exit code, the time bound, no password anywhere; returns the printed diagnosis."""
    assert run.exit_code == expected.exit_code, run
    # The bound that matters is `elapsed_seconds` inside the process; this one only catches a hang, with
    # room for a loaded machine's slower interpreter start.
    assert run.seconds < 2 * startup + timeout + 3
    assert PASSWORD not in run.stdout + run.stderr
    assert run.stderr == ""
    return run.stdout


def test_a_cram_md5_only_server_passes(
    ca: trustme.CA, ca_file: Path, tmp_path: Path, startup_seconds: float
) -> None:
    with cram_md5_only_server(ca, ca_file) as server:
        run = check_mail(tmp_path, server.env())
    output = assert_one_diagnosis(run, Problem.OK, 5, startup_seconds)
    assert "STARTTLS and login as mailer" in output
    assert server.handler.logins == [("CRAM-MD5", True)]


def test_ok_prints_one_line_then_the_rate_limits_and_exits_0(
    smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    env = smtp_server.env() | {"MAIL_RATE_LIMIT": "30/minute, 2000/day"}
    with commands_read() as dialogue:
        output = assert_one_diagnosis(check_mail(tmp_path, env), Problem.OK, 5, startup_seconds)
    line, *limits = output.splitlines()
    assert line.startswith(f"OK: localhost:{smtp_server.port} accepted the connection, STARTTLS and login")
    assert "takes mail from noreply@example.com" in line
    assert dialogue == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "RSET", "QUIT"]  # never DATA
    assert limits == [
        "rate limits, for every process together:",
        "  MAIL_RATE_LIMIT: 30/minute, 2000/day (from MAIL_RATE_LIMIT)",
        "  MAIL_RECIPIENT_RATE_LIMIT: none (MAIL_RECIPIENT_RATE_LIMIT unset)",
        "  API_RATE_LIMIT: none (API_RATE_LIMIT unset)",
    ]
    assert smtp_server.received == []


@pytest.fixture
def login_optional_server(ca: trustme.CA, ca_file: Path) -> Iterator[SmtpServer]:
    """Offers AUTH, but lets a client that does not log in go on to MAIL FROM."""
    with running_server(ca, ca_file, auth_required=False) as server:
        yield server


def test_a_relay_refused_without_login_exits_62_and_json_says_so(
    login_optional_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    """The false OK of issue 20: MAIL_USE_CREDENTIALS=false, and Postfix refuses every message at RCPT."""
    login_optional_server.handler.relay_needs_login = True
    env = login_optional_server.env() | {"MAIL_USE_CREDENTIALS": "false"}
    with commands_read() as dialogue:
        run = check_mail(tmp_path, env, "--json")
    report = json.loads(assert_one_diagnosis(run, Problem.RELAY_REFUSED, 5, startup_seconds))
    assert (report["problem"], report["exit_code"], run.exit_code) == ("relay_refused", 62, 62)
    assert "554 5.7.1" in report["message"]
    assert "MAIL_USE_CREDENTIALS=true" in report["fix"]
    assert "DATA" not in dialogue
    assert login_optional_server.received == []


def test_no_login_where_the_server_offers_one_is_ok_with_a_warning_on_stderr(
    login_optional_server: SmtpServer, tmp_path: Path
) -> None:
    run = check_mail(tmp_path, login_optional_server.env() | {"MAIL_USE_CREDENTIALS": "false"})
    assert run.exit_code == 0, run
    assert run.stdout.startswith("OK: ")
    [warning] = run.stderr.splitlines()
    assert warning.startswith(f"warning: localhost:{login_optional_server.port} offers login (AUTH ")
    assert "MAIL_USE_CREDENTIALS=false" in warning


def test_wrong_password_is_diagnosed_without_showing_either_password(
    smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    wrong = "Wr0ng-" + PASSWORD[::-1]
    env = smtp_server.env() | {"MAIL_PASSWORD": wrong}
    output = assert_one_diagnosis(
        check_mail(tmp_path, env, "--json"), Problem.AUTH_FAILED, 5, startup_seconds
    )
    assert wrong not in output
    report = json.loads(output)
    assert report["ok"] is False
    assert report["problem"] == "auth_failed"
    assert report["exit_code"] == Problem.AUTH_FAILED.exit_code
    assert report["port"] == smtp_server.port
    assert "535" in report["message"]
    assert "MAIL_PASSWORD" in report["fix"]


def test_unverified_certificates_are_warned_about_on_stderr(
    smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    run = check_mail(tmp_path, smtp_server.env() | {"MAIL_VALIDATE_CERTS": "false"}, "--json")
    assert run.exit_code == 0, run
    assert json.loads(run.stdout)["ok"] is True
    assert run.stderr.startswith("warning: MAIL_VALIDATE_CERTS=false: the server certificate is not verified")


def test_invalid_settings_exit_2_naming_the_variables(
    smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    env = smtp_server.env() | {"MAIL_SSL_TLS": "true"}
    output = assert_one_diagnosis(check_mail(tmp_path, env), Problem.SETTINGS_INVALID, 0, startup_seconds)
    first, fix = output.splitlines()
    assert first.startswith("FAILED [settings_invalid]: ")
    assert "MAIL_STARTTLS and MAIL_SSL_TLS are both true" in first
    assert fix.startswith("fix: ")


def test_implicit_tls_port_configured_for_starttls(
    implicit_tls_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    env = implicit_tls_server.env() | {"MAIL_STARTTLS": "true", "MAIL_SSL_TLS": "false", "MAIL_TIMEOUT": "2"}
    run = check_mail(tmp_path, env, "--json")
    report = json.loads(assert_one_diagnosis(run, Problem.IMPLICIT_TLS_ON_STARTTLS_PORT, 2, startup_seconds))
    assert report["elapsed_seconds"] < 1.0, "recognised long before MAIL_TIMEOUT"
    assert report["fix"].startswith("set MAIL_SSL_TLS=true and MAIL_STARTTLS=false")


def test_silent_server_is_cut_off_at_the_timeout(
    smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float
) -> None:
    with listening(silent) as listener:
        env = smtp_server.env() | {"MAIL_PORT": str(listener.port), "MAIL_TIMEOUT": "0.5"}
        output = assert_one_diagnosis(
            check_mail(tmp_path, env, "--json"), Problem.NO_GREETING, 0.5, startup_seconds
        )
    assert 0.5 <= json.loads(output)["elapsed_seconds"] < 1.5


def test_unresolvable_server(smtp_server: SmtpServer, tmp_path: Path, startup_seconds: float) -> None:
    env = smtp_server.env() | {"MAIL_SERVER": "mail.invalid"}
    output = assert_one_diagnosis(check_mail(tmp_path, env), Problem.DNS_FAILURE, 5, startup_seconds)
    assert output.startswith("FAILED [dns_failure]: MAIL_SERVER=mail.invalid does not resolve")
