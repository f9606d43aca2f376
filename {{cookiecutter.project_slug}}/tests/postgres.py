"""A real PostgreSQL server for tests: Debian's `postgresql` package, started in a temporary directory.

`initdb` refuses to run as root, so as root the server runs as the `postgres` user the package
creates. Tests that need it are skipped, with the reason, when the binaries are not installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from {{ cookiecutter.package_name }}.devsmtp import free_port

SEARCHED = [Path(path) for path in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (PATH first, then Debian's versioned folders), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    return next((folder for folder in SEARCHED if (folder / "initdb").exists()), None)


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresServer:
    """A running server; `database()` makes a fresh, empty database and returns its asyncpg URL."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url(name)


@contextmanager
def running_postgres(binaries: Path) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start on a free loopback port; stopped and deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()

    def run(program: str, *arguments: str) -> None:
        command = _as_postgres([str(binaries / program), *arguments])
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        try:
            yield PostgresServer(port)
        finally:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
