"""The README's test command installs the servers its tests need; CI runs nothing else before it.

apt-get is replaced by a stand-in that records its arguments: installing Debian packages from a
test would change the machine (and needs the registry).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _system_packages(
    tmp_path: Path, *, uid: int, pg_ctl: Path, postgis: Path
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    _stand_in(bin_dir, "apt-get", f'echo "$@" >> {calls}')
    _stand_in(bin_dir, "id", f"echo {uid}")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "system-packages",
            f"PG_CTL_GLOB={pg_ctl}",
            f"POSTGIS_GLOB={postgis}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(not os.path.exists("/usr/bin/make"), reason="needs GNU make")
def test_missing_postgresql_and_postgis_are_installed_by_the_test_target(tmp_path: Path) -> None:
    result, calls = _system_packages(tmp_path, uid=0, pg_ctl=tmp_path / "no-pg_ctl", postgis=tmp_path / "no-postgis")
    assert result.returncode == 0, result.stderr
    assert "update -qq" in calls
    assert "install -y -qq postgresql" in calls


@pytest.mark.skipif(not os.path.exists("/usr/bin/make"), reason="needs GNU make")
def test_postgis_is_installed_for_the_server_that_is_there(tmp_path: Path) -> None:
    pg_ctl = tmp_path / "pg_ctl"
    pg_ctl.write_text("")
    result, calls = _system_packages(tmp_path, uid=0, pg_ctl=pg_ctl, postgis=tmp_path / "no-postgis")
    assert result.returncode == 0, result.stderr
    majors = sorted(os.listdir("/usr/lib/postgresql"), key=int) if os.path.isdir("/usr/lib/postgresql") else []
    assert majors, "no /usr/lib/postgresql on this machine"
    assert f"install -y -qq postgresql-{majors[-1]}-postgis-3" in calls
    assert "install -y -qq postgresql" not in calls


@pytest.mark.skipif(not os.path.exists("/usr/bin/make"), reason="needs GNU make")
def test_without_root_the_target_says_what_to_install_and_installs_nothing(tmp_path: Path) -> None:
    result, calls = _system_packages(tmp_path, uid=1000, pg_ctl=tmp_path / "no-pg_ctl", postgis=tmp_path / "no-postgis")
    assert result.returncode == 0, result.stderr
    assert calls == []
    assert "install Debian's postgresql package" in result.stdout


def test_make_test_runs_the_install_before_the_tests() -> None:
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO), "test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert plan.index("postgis-3") < plan.index("pytest")


def test_ci_runs_the_readme_test_command_and_installs_nothing_itself() -> None:
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    make_commands = [line for line in commands if line.startswith("make ")]
    assert make_commands[0] == "make test"
    assert "make validate" in make_commands
    assert not any("apt-get" in line for line in commands)
