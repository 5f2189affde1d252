"""The collection-builder's provider commands, ``load-provider`` and ``overview``, as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from cube_assets.cli import main
from cube_assets.providers.registry import EXAMPLES_DIR


def test_load_provider_from_one_file_prints_what_it_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/catalog.sqlite"

    assert (
        main(["providers", "load-provider", "--ifile", str(EXAMPLES_DIR / "bdc.json"), "-v", "--catalog-url", url]) == 0
    )
    assert capsys.readouterr().out == "Provider bdc created\n"

    assert main(["providers", "load-provider", "-i", str(EXAMPLES_DIR / "bdc.json"), "-v", "--catalog-url", url]) == 0
    assert capsys.readouterr().out == "Provider bdc skipped\n"  # it exists already: skipped without --update
    assert (
        main(
            ["providers", "load-provider", "-i", str(EXAMPLES_DIR / "bdc.json"), "--update", "-v", "--catalog-url", url]
        )
        == 0
    )
    assert capsys.readouterr().out in ("Provider bdc updated\n", "Provider bdc skipped\n")


def test_load_provider_from_a_folder_is_quiet_without_verbose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/catalog.sqlite"

    assert main(["providers", "load-provider", "--from-dir", str(EXAMPLES_DIR), "--catalog-url", url]) == 0
    assert capsys.readouterr().out == ""
    assert main(["providers", "load-provider", "--from-dir", str(EXAMPLES_DIR), "-v", "--catalog-url", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Provider bdc skipped",
        "Provider cdse skipped",
        "Provider earth-search skipped",
    ]


def test_load_provider_needs_a_file_or_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["providers", "load-provider", "--catalog-url", f"sqlite:///{tmp_path}/catalog.sqlite"])


def test_overview_prints_the_data_collect_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/catalog.sqlite"
    assert main(["providers", "load-provider", "--from-dir", str(EXAMPLES_DIR), "--catalog-url", url]) == 0
    assert main(["providers", "set-priority", "sentinel-2-l2a", "cdse", "1", "--catalog-url", url]) == 0
    assert main(["providers", "set-priority", "sentinel-2-l2a", "earth-search", "0", "--catalog-url", url]) == 0
    capsys.readouterr()

    assert main(["providers", "overview", "sentinel-2-l2a", "--catalog-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[:2] == ["Collection: sentinel-2-l2a", "Data collect order:"]
    assert [line.split()[:2] for line in lines[2:]] == [["0", "earth-search"], ["1", "cdse"]]
    assert main(["providers", "overview", "nothing-here", "--catalog-url", url]) == 2
