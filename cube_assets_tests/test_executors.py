"""The executor choice and the Celery settings that runs and workers share."""

from __future__ import annotations

import pytest
from dagster._serdes import serialize_value

from cube_assets.celery_app import build_app
from cube_assets.cube_config import DEMO_CONFIG
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.errors import InvalidCubeConfig
from cube_assets.executors import (
    BROKER_VARIABLE,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    VISIBILITY_TIMEOUT_VARIABLE,
    celery_settings,
    executor_named,
    visibility_timeout_s,
)


def test_a_task_is_acknowledged_only_when_it_ends_and_requeued_when_its_worker_is_lost():
    settings = celery_settings({})
    assert settings["task_acks_late"] is True
    assert settings["task_reject_on_worker_lost"] is True
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["broker_transport_options"]["visibility_timeout"] == DEFAULT_VISIBILITY_TIMEOUT_S
    assert settings["result_backend_always_retry"] is True


def test_the_visibility_timeout_comes_from_its_variable():
    assert visibility_timeout_s({VISIBILITY_TIMEOUT_VARIABLE: "45"}) == 45
    assert celery_settings({VISIBILITY_TIMEOUT_VARIABLE: "90"})["broker_transport_options"]["visibility_timeout"] == 90


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
def test_a_bad_visibility_timeout_is_refused_with_the_variable_name(value):
    with pytest.raises(InvalidCubeConfig, match=f"{VISIBILITY_TIMEOUT_VARIABLE}='{value}'"):
        visibility_timeout_s({VISIBILITY_TIMEOUT_VARIABLE: value})


def test_the_broker_url_reaches_runs_as_an_env_reference_resolved_when_the_run_starts(tmp_path, monkeypatch):
    secret_url = "redis://:very-secret@broker:6379/0"
    monkeypatch.setenv(BROKER_VARIABLE, secret_url)
    job = build_definitions(DEMO_CONFIG, tmp_path, executor="celery").resolve_job_def(cube_job_name("s2_demo"))
    assert job.executor_def.name == "celery"
    assert "very-secret" not in serialize_value(job.get_job_snapshot())
    assert job.executor_def.config_schema.resolve_config({}).value["config"]["broker"] == secret_url
    monkeypatch.delenv(BROKER_VARIABLE)
    unresolved = job.executor_def.config_schema.resolve_config({})
    assert not unresolved.success and BROKER_VARIABLE in unresolved.errors[0].message


def test_without_a_broker_variable_runs_use_the_local_redis():
    resolved = executor_named("celery", {}).config_schema.resolve_config({})
    assert resolved.value["config"]["broker"] == "redis://localhost:6379/0"
    assert resolved.value["config"]["backend"] == "redis://localhost:6379/1"


# Celery shares a task across apps: a second app built in one process warns that it reuses the first's callable.
@pytest.mark.filterwarnings("ignore::celery.exceptions.CDeprecationWarning", "ignore:Task name 'execute_plan'")
def test_the_workers_app_has_the_settings_of_the_runs():
    app = build_app({BROKER_VARIABLE: "redis://broker.example.org:6379/0", VISIBILITY_TIMEOUT_VARIABLE: "120"})
    expected = celery_settings({VISIBILITY_TIMEOUT_VARIABLE: "120"})
    for name in ("task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier"):
        assert app.conf[name] == expected[name], name
    assert app.conf.broker_transport_options["visibility_timeout"] == 120
    assert app.conf.broker_url == "redis://broker.example.org:6379/0"
    assert "execute_plan" in app.tasks
