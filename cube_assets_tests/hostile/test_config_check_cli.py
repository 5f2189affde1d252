"""``cube-assets config check FILE``: every problem of a hostile cube file printed at once, one per line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml

from cube_assets.cli import main
from cube_assets.cube_config import DEMO_CONFIG
from cube_assets_tests.conftest import REPO_ROOT, SMALL_CUBE, SMALL_SIMULATOR


def _write(folder: Path, cubes: list[dict]) -> Path:
    path = folder / "cubes.yaml"
    path.write_text(yaml.safe_dump({"providers": [SMALL_SIMULATOR], "cubes": cubes}, sort_keys=False))
    return path


def _several_problems(folder: Path) -> tuple[Path, list[str]]:
    first = copy.deepcopy(SMALL_CUBE)
    first["bands"].append({"name": "../../etc"})
    first["grid"]["name_format"] = "{col:>1000000000}{row}"
    second = {
        **copy.deepcopy(SMALL_CUBE),
        "name": "second",
        "temporal": {"step": "16D", "foo": 1},
        "nodata": 99999,
        "end_date": "9999-12-31",
    }
    second["quality"] = {"band": "SCL", "rules": {"preset": "nope"}, "nodata": 0}
    second["indexes"] = {"NDVI": "__import__('os').system('id')"}  # checked against the bands, which are valid here
    fields = [
        "cubes[0].grid.name_format",
        "cubes[0].bands[4].name",
        "cubes[1].end_date",
        "cubes[1].indexes.NDVI",
        "cubes[1].temporal.foo",
        "cubes[1].quality.rules",
        "cubes[1].nodata",
    ]
    return _write(folder, [first, second]), fields


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cube_assets.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )


def test_config_check_prints_every_problem_one_per_line_and_exits_1(tmp_path):
    path, fields = _several_problems(tmp_path)
    result = _run("config", "check", str(path))
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stderr
    assert sorted(line.removeprefix(f"{path}: ").split(": ")[0] for line in lines) == sorted(fields)
    assert all(len(line) <= 1024 for line in lines)
    assert "Traceback" not in result.stderr


def test_config_check_of_a_valid_file_prints_one_ok_line_and_exits_0(tmp_path):
    result = _run("config", "check", str(DEMO_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"ok: 1 cubes, 2 tiles, 1 periods, 2 partitions: {DEMO_CONFIG}\n"


def test_config_check_of_a_missing_file_names_it_and_exits_1(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'absent.yaml'}: cannot read cube file: no such file\n"


def test_config_check_of_a_yaml_bomb_prints_one_bounded_line(tmp_path, capsys):
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    path = tmp_path / "cubes.yaml"
    path.write_text("\n".join(levels + ["cubes: [*i]"]))
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().out == (
        f"{path}: the file holds more than 200,000 values once its aliases are expanded\n"
    )


def test_config_check_writes_nothing_beside_the_file(tmp_path, capsys):
    path, _ = _several_problems(tmp_path)
    before = path.read_bytes()
    assert main(["config", "check", str(path)]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cubes.yaml"] and path.read_bytes() == before
