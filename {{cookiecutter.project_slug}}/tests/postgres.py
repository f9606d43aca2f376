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
    """A server in `folder`; `database()` makes a fresh, empty database and returns its asyncpg URL.

    `stop()` and `start()` take it down and bring it back on the same port, its databases kept.
    """

    def __init__(self, binaries: Path, folder: Path, port: int) -> None:
        self.binaries = binaries
        self.folder = folder
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

    def start(self) -> None:
        """pg_ctl start, waiting until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        data, log = str(self.folder / "data"), str(self.folder / "log")
        self.run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """pg_ctl stop, at once (connections are cut)."""
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def run(self, program: str, *arguments: str) -> None:
        """Run one of the PostgreSQL programs (as the postgres user when this is root)."""
        command = _as_postgres([str(self.binaries / program), *arguments])
        subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextmanager
def running_postgres(binaries: Path) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start on a free loopback port; stopped and deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = PostgresServer(binaries, folder, free_port())
    try:
        server.run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
