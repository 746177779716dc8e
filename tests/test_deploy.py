"""Issue 18, "ship it": the container image and the compose file. No container tool runs in
CI, so the Dockerfile is linted (hadolint, in `make lint`) and the compose file's commands are
run here directly: its one-off `migrate` and then its `serve`, as the image's entrypoint
(`o2c`) would run them, against the test database (PostgreSQL in the PostgreSQL suite)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import free_port
from tests.test_cli import env_for

ROOT = Path(__file__).resolve().parent.parent


def instruction(dockerfile: str, name: str) -> str:
    """The last `name` instruction of the final stage (continuation lines joined)."""
    text = dockerfile.replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()
             if line.strip().upper().startswith(name + " ")]
    return lines[-1][len(name) + 1:].strip()


def test_the_image_runs_o2c_serve_as_a_non_root_user() -> None:
    # given
    dockerfile = (ROOT / "Dockerfile").read_text()
    # then
    assert json.loads(instruction(dockerfile, "ENTRYPOINT")) == ["o2c"]
    assert json.loads(instruction(dockerfile, "CMD")) == ["serve"]
    assert instruction(dockerfile, "USER") not in ("root", "0")
    assert "/readyz" in instruction(dockerfile, "HEALTHCHECK")


def test_compose_migrates_once_then_serves_and_its_commands_work(database_url, standin
                                                                 ) -> None:
    # given: the compose file
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    migrate, app = services["migrate"], services["app"]
    assert migrate["image"] == app["image"] and "build" in migrate
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["environment"]["DATABASE_URL"].startswith("postgresql://")
    # when: its commands run as the entrypoint would run them, on the test database
    port = free_port()
    env = env_for(database_url, standin.api_url, port)
    migrated = subprocess.run([sys.executable, "-m", "bot.cli", *migrate["command"]],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    server = subprocess.Popen([sys.executable, "-m", "bot.cli", *app["command"], "--host",
                               "127.0.0.1"], env={**env, "O2C_LOG_FORMAT": "json"}, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "did not get ready"
            time.sleep(0.2)
        metrics = httpx.get(f"{base}/metrics")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    # then: ready, observable, and logging JSON lines
    assert metrics.status_code == 200 and "o2c_outbox_depth" in metrics.text
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert logged and all({"time", "level", "logger", "message"} <= set(x) for x in logged)
