import subprocess
import sys

from dagster import AssetKey, Definitions, MultiPartitionsDefinition

from cube_assets.assets import STAGES
from cube_assets.cube_config import DEMO_CONFIG
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.partitions import split_partition_key
from cube_assets_tests.conftest import REPO_ROOT


def test_demo_definitions_load_and_validate(tmp_path):
    defs = build_definitions(DEMO_CONFIG, tmp_path)
    Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == {f"s2_demo/{stage}" for stage in STAGES}
    assert defs.resolve_job_def(cube_job_name("s2_demo")) is not None


def test_every_stage_shares_the_tile_by_period_partitions(tmp_path):
    defs = build_definitions(DEMO_CONFIG, tmp_path)
    graph = defs.resolve_asset_graph()
    partitions = {graph.get(AssetKey(["s2_demo", stage])).partitions_def for stage in STAGES}
    assert len(partitions) == 1
    (definition,) = partitions
    assert isinstance(definition, MultiPartitionsDefinition)
    keys = definition.get_partition_keys()
    assert sorted(keys) == ["2024-01-01|285228", "2024-01-01|286228"]
    assert sorted(split_partition_key(k) for k in keys) == [("285228", "2024-01-01"), ("286228", "2024-01-01")]


def test_dagster_cli_validates_the_workspace(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={"CUBE_ASSETS_DATA_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stdout + result.stderr


def test_embedded_instance_configuration_loads_with_queued_runs(tmp_path):
    import shutil

    from dagster import DagsterInstance

    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
