"""Files holding credentials or messages are created for their owner alone (0600, folders 0700), whatever
the umask: `.env` from `make setup`, the SQLite store with its WAL and SHM files, the dev inbox and CA key
(these last in test_dev_inbox.py)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import auth

PROJECT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("usual_umask")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_make_setup_copies_env_for_its_owner_only(tmp_path: Path) -> None:
    for name in ("Makefile", ".env.example"):
        shutil.copy(PROJECT / name, tmp_path / name)

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    subprocess.run([make, "--no-print-directory", ".env"], cwd=tmp_path, check=True, capture_output=True)

    assert (tmp_path / ".env").read_bytes() == (PROJECT / ".env.example").read_bytes()
    assert mode(tmp_path / ".env") == 0o600


def test_the_sqlite_store_and_its_wal_and_shm_files_are_private(client: TestClient, tmp_path: Path) -> None:
    """The default store, `notifications.db` in the working directory, while the service writes to it."""
    notification = {"to": ["alice@example.com"], "subject": "Private", "body": "For Alice only"}
    assert client.post("/notifications", json=notification, headers=auth()).status_code == 202

    files = [tmp_path / f"notifications.db{suffix}" for suffix in ("", "-wal", "-shm")]
    assert {file.name: mode(file) for file in files} == {file.name: 0o600 for file in files}
