"""`check-mail --deliverability` against a real DNS server on loopback serving good, missing and
broken SPF, DKIM, DMARC and MX records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.mail.doctor.deliverability.report import check_deliverability, provider_name
from {{ cookiecutter.package_name }}.mail.doctor.deliverability.verdict import Status, Verdict
from {{ cookiecutter.package_name }}.mail.settings import MailSettings
from {{ cookiecutter.package_name }}.mail.signing.dkim import DkimSigner, generate_key, private_pem

from .dns_server import dns_server, silent_dns_server
from .smtp_server import SmtpServer

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src"
KEY = generate_key("ed25519")
OTHER_KEY = generate_key("ed25519")
RSA_KEY = generate_key("rsa")
GOOD_RECORD = DkimSigner("good-mail.com", "s1", KEY).dns_record()
OTHER_RECORD = DkimSigner("good-mail.com", "s1", OTHER_KEY).dns_record()
RSA_RECORD = DkimSigner("two-mail.com", "rsa1", RSA_KEY).dns_record()

ZONE: dict[str, list[tuple[str, str]]] = {
    "sendgrid.net": [("TXT", "v=spf1 ip4:167.89.0.0/17 ~all")],
    # good-mail.com: everything right for SendGrid, and for this service's own DKIM key
    "good-mail.com": [("TXT", "v=spf1 include:sendgrid.net ~all"), ("MX", "mx.good-mail.com")],
    "_dmarc.good-mail.com": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@good-mail.com")],
    "s1._domainkey.good-mail.com": [("TXT", GOOD_RECORD)],
    "s2._domainkey.good-mail.com": [("CNAME", "s2.domainkey.u1.wl.sendgrid.net")],
    # bare-mail.com exists but publishes nothing
    "bare-mail.com": [("A", "192.0.2.1")],
    # broken-mail.com: two SPF records, another key, DMARC without a policy
    "broken-mail.com": [("TXT", "v=spf1 include:sendgrid.net ~all"), ("TXT", "v=spf1 -all")],
    "s1._domainkey.broken-mail.com": [("TXT", OTHER_RECORD)],
    "_dmarc.broken-mail.com": [("TXT", "v=DMARC1; rua=mailto:d@broken-mail.com")],
    "typo-mail.com": [("TXT", "v=spf1 incude:sendgrid.net ~all")],
    "other-mail.com": [("TXT", "v=spf1 include:_spf.google.com ~all")],
    "_spf.google.com": [("TXT", "v=spf1 ip4:74.125.0.0/16 ~all")],
    "_dmarc.other-mail.com": [("TXT", "v=DMARC1; p=none")],
    "deep-mail.com": [("TXT", "v=spf1 include:l1.deep-mail.com ~all")],
    **{f"l{n}.deep-mail.com": [("TXT", f"v=spf1 include:l{n + 1}.deep-mail.com a mx")] for n in range(1, 6)},
    "l6.deep-mail.com": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    # own-mail.com sends through its own MTA, listed by address
    "own-mail.com": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"), ("MX", "mx.own-mail.com")],
    "mail.own-mail.com": [("A", "192.0.2.10")],
    "elsewhere.own-mail.com": [("A", "198.51.100.7")],
    # mx-mail.com authorizes its MX hosts, one of which is the sending server
    "mx-mail.com": [("TXT", "v=spf1 mx -all"), ("MX", "in.mx-mail.com")],
    "in.mx-mail.com": [("A", "203.0.113.5")],
    "_dmarc.own-mail.com": [("TXT", "v=DMARC1; p=quarantine; adkim=s")],
    "sub.own-mail.com": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "s1._domainkey.own-mail.com": [("TXT", GOOD_RECORD)],
    "failing-mail.com": [("SERVFAIL", "")],
    # two-mail.com signs with an RSA and an Ed25519 key, but published only the RSA one
    "rsa1._domainkey.two-mail.com": [("TXT", RSA_RECORD)],
    # over 512 bytes: truncated over UDP, fetched again over TCP
    "big-mail.com": [
        (
            "TXT",
            "v=spf1 " + " ".join(f"ip4:198.51.{n}.0/24" for n in range(40)) + " include:sendgrid.net ~all",
        )
    ],
}


@pytest.fixture(scope="module")
def dns() -> Iterator[str]:
    with dns_server(ZONE) as address:
        yield address


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(private_pem(KEY))
    return path


def settings(dns: str, from_address: str, server: str = "smtp.sendgrid.net", **extra: Any) -> MailSettings:
    return MailSettings(
        server=server,
        port=587,
        username="apikey",
        password="secret-password",
        MAIL_FROM=from_address,
        dns_server=dns,
        **{"timeout": 2, **extra},
    )


def verdict(verdicts: list[Verdict], record: str) -> Verdict:
    (found,) = (each for each in verdicts if each.record == record)
    return found


def signing(key_file: Path, domain: str) -> dict[str, Any]:
    return {"dkim_domain": domain, "dkim_selector": "s1", "dkim_private_key_file": key_file}


@pytest.mark.parametrize(
    ("from_address", "server", "status", "words"),
    [
        ("a@good-mail.com", "smtp.sendgrid.net", Status.OK, "authorizes sendgrid (include:sendgrid.net)"),
        ("a@bare-mail.com", "smtp.sendgrid.net", Status.PROBLEM, "has no SPF record"),
        ("a@nowhere-mail.com", "smtp.sendgrid.net", Status.PROBLEM, "has no SPF record"),
        ("a@broken-mail.com", "smtp.sendgrid.net", Status.PROBLEM, "has 2 SPF records"),
        (
            "a@typo-mail.com",
            "smtp.sendgrid.net",
            Status.PROBLEM,
            "'incude:sendgrid.net' in the record of typo-mail.com",
        ),
        ("a@other-mail.com", "smtp.sendgrid.net", Status.PROBLEM, "include:sendgrid.net is missing"),
        ("a@other-mail.com", "smtp.gmail.com", Status.OK, "authorizes gmail (include:_spf.google.com)"),
        ("a@big-mail.com", "smtp.sendgrid.net", Status.OK, "authorizes sendgrid (include:sendgrid.net)"),
        ("a@deep-mail.com", "smtp.sendgrid.net", Status.PROBLEM, "needs 16 DNS lookups; over 10"),
        ("a@own-mail.com", "mail.own-mail.com", Status.OK, "authorizes mail.own-mail.com's address"),
        ("a@own-mail.com", "192.0.2.99", Status.OK, "authorizes 192.0.2.99's address"),
        ("a@mx-mail.com", "203.0.113.5", Status.OK, "authorizes 203.0.113.5's address"),
        (
            "a@own-mail.com",
            "elsewhere.own-mail.com",
            Status.WARNING,
            "does not list elsewhere.own-mail.com (198.51.100.7)",
        ),
    ],
)
def test_spf_verdicts(dns: str, from_address: str, server: str, status: Status, words: str) -> None:
    spf = verdict(check_deliverability(settings(dns, from_address, server)), "SPF")
    assert (spf.status, words in spf.message) == (status, True), spf


def test_a_missing_spf_record_gets_the_record_to_publish(dns: str) -> None:
    spf = verdict(
        check_deliverability(settings(dns, "a@bare-mail.com", "email-smtp.eu-west-1.amazonaws.com")), "SPF"
    )
    assert spf.fix == 'publish TXT bare-mail.com "v=spf1 include:amazonses.com ~all"'


def test_dkim_key_published_and_matching(dns: str, key_file: Path) -> None:
    dkim = verdict(
        check_deliverability(settings(dns, "a@good-mail.com", **signing(key_file, "good-mail.com"))), "DKIM"
    )
    assert dkim == Verdict(
        "DKIM", Status.OK, "s1._domainkey.good-mail.com publishes the key this service signs with"
    )


def test_dkim_key_missing_tells_the_record_to_publish(dns: str, key_file: Path) -> None:
    dkim = verdict(
        check_deliverability(settings(dns, "a@bare-mail.com", **signing(key_file, "bare-mail.com"))), "DKIM"
    )
    assert dkim.status is Status.PROBLEM
    assert "no DKIM key is published at s1._domainkey.bare-mail.com" in dkim.message
    assert dkim.fix == f'publish TXT s1._domainkey.bare-mail.com "{GOOD_RECORD}"'


def test_dkim_key_of_another_private_key_does_not_verify(dns: str, key_file: Path) -> None:
    dkim = verdict(
        check_deliverability(settings(dns, "a@broken-mail.com", **signing(key_file, "broken-mail.com"))),
        "DKIM",
    )
    assert dkim.status is Status.PROBLEM
    assert "does not verify a message signed with the private key in use" in dkim.message
    assert GOOD_RECORD in dkim.fix


def test_each_signing_key_s_record_is_checked(
    dns: str, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rsa_file = tmp_path_factory.mktemp("rsa") / "rsa.pem"
    rsa_file.write_bytes(private_pem(RSA_KEY))
    keys = {"dkim_selector": "rsa1,ed1", "dkim_private_key_file": f"{rsa_file},{key_file}"}
    verdicts = check_deliverability(settings(dns, "a@two-mail.com", dkim_domain="two-mail.com", **keys))
    rsa1, ed1 = (each for each in verdicts if each.record == "DKIM")
    assert rsa1 == Verdict(
        "DKIM", Status.OK, "rsa1._domainkey.two-mail.com publishes the key this service signs with"
    )
    assert (ed1.status, ed1.message) == (
        Status.PROBLEM,
        "no DKIM key is published at ed1._domainkey.two-mail.com",
    )
    assert (
        ed1.fix
        == f'publish TXT ed1._domainkey.two-mail.com "{DkimSigner("two-mail.com", "ed1", KEY).dns_record()}"'
    )


def test_without_signing_an_own_mta_is_warned(dns: str) -> None:
    dkim = verdict(check_deliverability(settings(dns, "a@own-mail.com", "mail.own-mail.com")), "DKIM")
    assert dkim.status is Status.WARNING
    assert "does not sign" in dkim.message
    assert "dkim-keygen" in dkim.fix


@pytest.mark.parametrize(
    ("from_address", "signs", "status", "words"),
    [
        ("a@good-mail.com", True, Status.OK, "p=reject"),
        ("a@bare-mail.com", False, Status.PROBLEM, "has no DMARC record"),
        ("a@broken-mail.com", False, Status.PROBLEM, "has no valid policy"),
        ("a@other-mail.com", False, Status.WARNING, "sendgrid sends with its own bounce domain"),
        ("a@good-mail.com", False, Status.WARNING, "only a DKIM signature for good-mail.com aligns"),
        (
            "a@sub.own-mail.com",
            True,
            Status.PROBLEM,
            "DKIM d=own-mail.com does not align with From sub.own-mail.com under adkim=s",
        ),
    ],
)
def test_dmarc_verdicts(
    dns: str, key_file: Path, from_address: str, signs: bool, status: Status, words: str
) -> None:
    domain = from_address.partition("@")[2]
    extra = signing(key_file, domain.removeprefix("sub.")) if signs else {}
    dmarc = verdict(check_deliverability(settings(dns, from_address, **extra)), "DMARC")
    assert (dmarc.status, words in dmarc.message) == (status, True), dmarc


def test_dmarc_monitoring_only_is_a_warning(dns: str) -> None:
    dmarc = verdict(check_deliverability(settings(dns, "a@other-mail.com", "smtp.gmail.com")), "DMARC")
    assert dmarc.status is Status.WARNING


def test_dmarc_falls_back_to_the_organizational_domain(dns: str) -> None:
    dmarc = verdict(check_deliverability(settings(dns, "a@sub.own-mail.com", "mail.own-mail.com")), "DMARC")
    assert dmarc == Verdict(
        "DMARC", Status.OK, "DMARC at _dmarc.own-mail.com: p=quarantine, From aligned with SPF or DKIM"
    )


def test_mx_verdicts(dns: str) -> None:
    assert verdict(check_deliverability(settings(dns, "a@good-mail.com")), "MX").status is Status.OK
    mx = verdict(check_deliverability(settings(dns, "a@bare-mail.com")), "MX")
    assert (mx.status, "has no MX record" in mx.message) == (Status.WARNING, True)


def test_sendgrid_domain_authentication(dns: str) -> None:
    note = verdict(check_deliverability(settings(dns, "a@good-mail.com")), "provider")
    assert note.status is Status.WARNING  # s2 is published, s1 is a TXT key, not SendGrid's CNAME
    assert "no CNAME at s1._domainkey.good-mail.com" in note.message
    bare = verdict(check_deliverability(settings(dns, "a@bare-mail.com")), "provider")
    assert "s1._domainkey.bare-mail.com, s2._domainkey.bare-mail.com" in bare.message


def test_ses_note_asks_for_a_verified_identity(dns: str) -> None:
    note = verdict(
        check_deliverability(settings(dns, "a@good-mail.com", "email-smtp.us-east-1.amazonaws.com")),
        "provider",
    )
    assert (note.status, "verified identity" in note.message) == (Status.INFO, True)


def test_servfail_is_a_dns_failure_not_a_bad_record(dns: str) -> None:
    verdicts = check_deliverability(settings(dns, "a@failing-mail.com"))
    spf = verdict(verdicts, "SPF")
    assert spf.status is Status.DNS_FAILURE
    assert "looking up TXT failing-mail.com failed" in spf.message


def test_a_resolver_that_never_answers_is_reported_within_bounded_time(key_file: Path) -> None:
    with silent_dns_server() as address:
        started = time.monotonic()
        verdicts = check_deliverability(
            settings(address, "a@good-mail.com", timeout=1, **signing(key_file, "good-mail.com"))
        )
        elapsed = time.monotonic() - started
    assert [each.record for each in verdicts] == ["SPF", "DKIM", "DMARC", "MX", "provider"]
    assert {each.status for each in verdicts} == {Status.DNS_FAILURE}
    assert "did not answer within 1 s" in verdict(verdicts, "SPF").message
    assert elapsed < 3  # one timeout, then the other lookups fail at once


@pytest.mark.parametrize(
    ("server", "provider"),
    [
        ("smtp.sendgrid.net", "sendgrid"),
        ("email-smtp.eu-west-1.amazonaws.com", "ses"),
        ("smtp.office365.com", "office365"),
        ("smtp.gmail.com", "gmail"),
        ("smtp.eu.mailgun.org", "mailgun"),
        ("smtp.postmarkapp.com", "postmark"),
        ("127.0.0.1", "local"),
        ("mail.example.org", "custom"),
    ],
)
def test_provider_is_inferred_from_mail_server(server: str, provider: str) -> None:
    assert provider_name(server) == provider


def run_check(dns: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(free_port()),  # nothing listens: the SMTP probe fails fast
        "MAIL_USE_CREDENTIALS": "false",
        "MAIL_FROM": "a@good-mail.com",
        "MAIL_DNS_SERVER": dns,
        "MAIL_TIMEOUT": "2",
        **env,
    }
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "check-mail", "--deliverability", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60, check=False)


def test_cli_json_has_a_deliverability_section(dns: str) -> None:
    result = run_check(dns, "--json")
    report = json.loads(result.stdout)
    assert report["problem"] == "connection_refused"
    assert report["deliverability"]["domain"] == "good-mail.com"
    records = {each["record"]: each["status"] for each in report["deliverability"]["verdicts"]}
    assert records == {"SPF": "info", "DKIM": "warning", "DMARC": "ok", "MX": "ok"}
    assert result.returncode == report["exit_code"]


def test_cli_text_names_each_record_and_exits_40_for_a_record_to_fix(
    dns: str, smtp_server: SmtpServer
) -> None:
    result = run_check(dns, **{**smtp_server.env(), "MAIL_FROM": "a@bare-mail.com"})
    assert result.stdout.startswith("OK: ")
    assert "deliverability of bare-mail.com:" in result.stdout
    assert "SPF      PROBLEM: bare-mail.com has no SPF record" in result.stdout
    assert "fix: publish TXT _dmarc.bare-mail.com" in result.stdout
    assert result.returncode == 50


@pytest.mark.parametrize(("from_address", "exit_code"), [("a@bare-mail.com", 50), ("a@good-mail.com", 51)])
def test_cli_json_exit_code_is_the_process_exit_code(
    dns: str, smtp_server: SmtpServer, from_address: str, exit_code: int
) -> None:
    """A record to fix exits 50; DNS lookups that fail (a resolver that never answers) exit 51."""
    with silent_dns_server() as silent:
        resolver = dns if exit_code == 50 else silent
        env = {**smtp_server.env(), "MAIL_FROM": from_address, "MAIL_TIMEOUT": "2"}
        result = run_check(resolver, "--json", **env)
    report = json.loads(result.stdout)
    assert report["problem"] == "ok"
    assert (result.returncode, report["exit_code"]) == (exit_code, exit_code)
