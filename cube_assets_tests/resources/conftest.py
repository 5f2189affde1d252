"""The stand-in ``docker`` executable for the Sen2Cor resource tests (no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

STANDIN_SOURCE = Path(__file__).with_name("standin_docker.py")


@dataclass
class StandinDocker:
    """Where the stand-in records its calls, and how to set its behaviour for one test."""

    bin_dir: Path
    log: Path
    state: Path
    monkeypatch: pytest.MonkeyPatch

    def mode(self, mode: str) -> None:
        """``ok`` | ``no-scl`` | ``nothing`` | ``fail`` | ``hang`` (see standin_docker.py)."""
        self.monkeypatch.setenv("STANDIN_DOCKER_MODE", mode)

    def missing_images(self, *references: str) -> None:
        """Make ``docker run`` of these image references fail as for an image that cannot be pulled."""
        self.monkeypatch.setenv("STANDIN_DOCKER_MISSING_IMAGES", ",".join(references))

    def calls(self) -> list[dict]:
        """Every call so far: ``{"command": "run" | "stop" | "kill", "args": [...], "pid": int}``."""
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def runs(self) -> list[dict]:
        """The ``docker run`` calls so far."""
        return [c for c in self.calls() if c["command"] == "run"]


@pytest.fixture
def standin_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A ``docker`` first on PATH that records its arguments and acts per test (``ok`` by default)."""
    bin_dir = tmp_path / "standin-bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"#!{sys.executable}\n" + STANDIN_SOURCE.read_text())
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    docker = StandinDocker(bin_dir, tmp_path / "docker-calls.jsonl", tmp_path / "docker-state", monkeypatch)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("STANDIN_DOCKER_LOG", str(docker.log))
    monkeypatch.setenv("STANDIN_DOCKER_STATE", str(docker.state))
    monkeypatch.setenv("STANDIN_DOCKER_MODE", "ok")
    monkeypatch.delenv("STANDIN_DOCKER_MISSING_IMAGES", raising=False)
    yield docker
    # A test that failed half-way may leave a "hanging container" (its pid file is still there):
    # end it, after checking that the pid is still our stand-in and not a reused one.
    for pid_file in docker.state.glob("*.pid") if docker.state.is_dir() else ():
        pid = int(pid_file.read_text())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(script).encode() in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
