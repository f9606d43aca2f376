"""The service as its own process (uvicorn), for tests that kill it or send it concurrent requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from {{ cookiecutter.package_name }}.devsmtp import free_port

from .conftest import API_KEY


class ServiceProcess:
    """`uvicorn {{ cookiecutter.package_name }}.main:app` on a free port, with this process's environment;
    `workers` > 1 runs that many worker processes."""

    def __init__(self, log: Path, log_level: str = "warning", workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.log_level = log_level
        """uvicorn's --log-level, and LOG_LEVEL unless `env` sets it (the service applies it once loaded)."""
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._env = {
            **os.environ,
            "API_KEYS": API_KEY,
            "LOG_LEVEL": log_level.upper(),
            "PYTHONPATH": os.pathsep.join(sys.path),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Self:
        """Start it and wait until /health answers."""
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "{{ cookiecutter.package_name }}.main:app",
                    "--port",
                    str(self.port),
                    "--log-level",
                    self.log_level,
                    "--workers",
                    str(self.workers),
                ],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited: {self._log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the service did not answer /health in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait, as a supervisor stops it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
