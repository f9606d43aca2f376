"""A real Dovecot IMAP server for tests: Debian's `dovecot-imapd`, started in a temporary directory.

Its own configuration file (no system configuration, no state outside the folder): implicit TLS on
a free loopback port with a trustme certificate (and plain IMAP on another, which Dovecot allows
from loopback only), one passwd-file user. Every Dovecot process runs
as one user: as root the `dovecot` user the package creates (as PostgreSQL runs as `postgres`),
otherwise the user running the tests. Tests that need it are skipped, with the reason, when
Dovecot is not installed.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template

import trustme

from {{ cookiecutter.package_name }}.devsmtp import free_port

SEARCHED = [Path("/usr/sbin/dovecot")]
USER = "bounces"
PASSWORD = "imap-Test-Passw0rd"
APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")

CONFIG = Template("""\
base_dir = $folder/run
state_dir = $folder/state
log_path = $folder/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$folder/cert.pem
ssl_key = <$folder/key.pem
default_login_user = $user
default_internal_user = $user
first_valid_uid = $uid
auth_failure_delay = 0
mail_location = maildir:$folder/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $folder/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $folder/passwd
}
service imap-login {
  chroot =
  inet_listener imap {
    port = $plain_port
  }
  inet_listener imaps {
    port = $port
    ssl = yes
  }
}
service anvil {
  chroot =
  # no growing delay after failed logins (the tests log in with a wrong password on purpose)
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
""")


def dovecot_binary() -> Path | None:
    """The dovecot program (PATH first, then Debian's place), or None."""
    found = shutil.which("dovecot")
    if found:
        return Path(found)
    return next((path for path in SEARCHED if path.exists()), None)


class DovecotServer:
    """A running Dovecot; `mailbox()` makes a fresh, empty folder of the one user for a test."""

    def __init__(self, folder: Path, port: int, plain_port: int, ca_file: Path) -> None:
        self.folder = folder
        self.port = port
        self.plain_port = plain_port
        self.ca_file = ca_file

    def url(self, mailbox: str = "INBOX", *, tls: bool = True) -> str:
        """imaps:// to the TLS port, or imap:// to the plain one."""
        return (
            f"imaps://{USER}@127.0.0.1:{self.port}/{mailbox}"
            if tls
            else f"imap://{USER}@127.0.0.1:{self.plain_port}/{mailbox}"
        )

    def env(self, mailbox: str = "INBOX") -> dict[str, str]:
        """The BOUNCE_IMAP_* variables that read `mailbox`."""
        return {
            "BOUNCE_IMAP_URL": self.url(mailbox),
            "BOUNCE_IMAP_PASSWORD": PASSWORD,
            "BOUNCE_IMAP_CA_BUNDLE": str(self.ca_file),
        }

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in IMAP session of the test's own (to put messages in and look at them)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        try:
            imap.login(USER, PASSWORD)
            yield imap
        finally:
            imap.logout()

    def mailbox(self) -> str:
        """A new, empty folder's name."""
        name = f"test-{uuid.uuid4().hex[:12]}"
        with self.client() as imap:
            assert imap.create(name)[0] == "OK"
        return name

    def append(self, mailbox: str, *messages: bytes) -> list[int]:
        """IMAP APPEND each message (LF line ends become CRLF) to `mailbox`, unseen; their UIDs."""
        uids = []
        with self.client() as imap:
            for message in messages:
                status, data = imap.append(mailbox, "", None, message)
                found = APPENDUID.search(data[0] or b"")
                assert status == "OK", data
                assert found is not None, data
                uids.append(int(found[1]))
        return uids

    def flags(self, mailbox: str) -> dict[int, set[str]]:
        """Every message in `mailbox` (deleted or not) by UID, with its flags (\\Recent left out)."""
        with self.client() as imap:
            imap.select(f'"{mailbox}"', readonly=True)
            status, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        assert status == "OK", data
        found: dict[int, set[str]] = {}
        for line in data:
            parsed = (
                re.match(rb"\d+ \(UID (\d+) FLAGS \(([^)]*)\)\)", line) if isinstance(line, bytes) else None
            )
            if parsed:
                found[int(parsed[1])] = set(parsed[2].decode().split()) - {"\\Recent"}
        return found

    def start(self, timeout: float = 15.0) -> subprocess.Popen[bytes]:
        """Start `dovecot -F` and wait until it answers on its port over TLS."""
        runs_as = _run_as()
        command = [str(dovecot_binary()), "-F", "-c", str(self.folder / "dovecot.conf")]
        as_root = os.geteuid() == 0
        with (self.folder / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                user=runs_as.pw_uid if as_root else None,
                group=runs_as.pw_gid if as_root else None,
                extra_groups=[] if as_root else None,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return process
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    log = (self.folder / "stderr.log").read_text() + _read(self.folder / "dovecot.log")
                    raise AssertionError(f"dovecot did not start on port {self.port}:\n{log}") from None
                time.sleep(0.05)


def _run_as() -> pwd.struct_passwd:
    """The user every Dovecot process runs as: `dovecot` as root, else whoever runs the tests."""
    return pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@contextmanager
def running_dovecot(ca: trustme.CA) -> Iterator[DovecotServer]:
    """Dovecot on a free loopback port, with a certificate from `ca`; stopped and deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    runs_as = _run_as()
    server = DovecotServer(folder, free_port(), free_port(), folder / "ca.pem")
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))
    (folder / "cert.pem").write_bytes(b"".join(pem.bytes() for pem in certificate.cert_chain_pems))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    scheme = "{PLAIN}"  # passwd-file: user:{scheme}password:uid:gid::home
    (folder / "passwd").write_text(
        f"{USER}:{scheme}{PASSWORD}:{runs_as.pw_uid}:{runs_as.pw_gid}::{folder / 'home'}\n"
    )
    (folder / "dovecot.conf").write_text(
        CONFIG.substitute(
            folder=folder,
            user=runs_as.pw_name,
            uid=runs_as.pw_uid,
            port=server.port,
            plain_port=server.plain_port,
        )
    )
    for path in [folder, *folder.iterdir()]:
        os.chown(path, runs_as.pw_uid, runs_as.pw_gid)
    try:
        process = server.start()
        try:
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
