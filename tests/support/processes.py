"""`o2c` as real subprocesses (serve, run), for crash and multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN, API_TOKEN, BOT_TOKEN, SIGNING_SECRET, free_port
from tests.support.timetravel import child_env

ROOT = Path(__file__).resolve().parents[2]


def o2c_env(database_url: str, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O2C_", "SLACK_", "SMTP"))}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
               SLACK_API_URL=api_url, DATABASE_URL=database_url, O2C_API_TOKEN=API_TOKEN,
               O2C_APPROVALS_CHANNEL="CAPPROVAL", O2C_ALERTS_CHANNEL="CALERTS01",
               O2C_AR_CHANNEL="CAR000001", O2C_ADMINS=ADMIN, O2C_SCHEDULER="false")
    env.update(extra)
    return env


def o2c_run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=child_env(env),
                          capture_output=True, text=True, timeout=timeout, check=False)


class ServeProcess:
    """`python -m bot.cli serve` on a free port; `kill()` is SIGKILL (no clean shutdown)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ServeProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"], cwd=ROOT,
            env=child_env(self.env), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
