"""The executors a run can use, and the Celery settings the run and its workers share.

``CUBE_ASSETS_EXECUTOR`` picks one of :data:`EXECUTORS`. ``celery`` sends each step as a task
to a broker (``CUBE_ASSETS_CELERY_BROKER``, Redis by default; RabbitMQ's ``amqp://`` works too)
and reads its events back from the result backend (``CUBE_ASSETS_CELERY_BACKEND``); the
workers (``dagster-celery worker start -A cube_assets.celery_app``) build their Celery app from
the same :func:`celery_settings`, so what a run asks of a task (late acknowledgement, requeue
when the worker dies) is what the worker does.

Broker and backend URLs may hold a password: runs get them as ``{"env": NAME}`` config, resolved
when the run starts, so they are in no job snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from cube_assets.errors import InvalidCubeConfig

EXECUTORS = ("multiprocess", "in_process", "k8s", "celery")

BROKER_VARIABLE = "CUBE_ASSETS_CELERY_BROKER"
BACKEND_VARIABLE = "CUBE_ASSETS_CELERY_BACKEND"
VISIBILITY_TIMEOUT_VARIABLE = "CUBE_ASSETS_CELERY_VISIBILITY_TIMEOUT_S"
DEFAULT_BROKER = "redis://localhost:6379/0"
DEFAULT_BACKEND = "redis://localhost:6379/1"
#: Longer than the longest step: a task not acknowledged by then is given to another worker.
DEFAULT_VISIBILITY_TIMEOUT_S = 7200
#: How long publishing a task and reading a result keep retrying while the broker is away.
BROKER_RETRY_POLICY = {"max_retries": 40, "interval_start": 0, "interval_step": 1, "interval_max": 2}


def visibility_timeout_s(environ: Mapping[str, str]) -> int:
    """Return the seconds after which an unacknowledged task is redelivered (from ``environ``).

    Raises:
        InvalidCubeConfig: naming the variable when it is not a positive whole number.
    """
    raw = environ.get(VISIBILITY_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_VISIBILITY_TIMEOUT_S
    if not raw.isdigit() or int(raw) <= 0:
        raise InvalidCubeConfig(f"{VISIBILITY_TIMEOUT_VARIABLE}={raw!r}: must be a positive number of seconds")
    return int(raw)


def celery_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the Celery settings (lowercase names) of runs and workers alike.

    * ``task_acks_late`` and ``task_reject_on_worker_lost``: a task is acknowledged when it ends,
      so a worker that dies (``kill -9``, out of memory, a lost machine) leaves it unacknowledged;
      the broker hands it to another worker after the visibility timeout (Redis) or at once
      (RabbitMQ, when the connection drops). Every step writes atomically and upserts, so running
      one twice is safe.
    * ``worker_prefetch_multiplier=1``: a worker reserves one task at a time, so idle workers
      take the next step rather than a busy worker's backlog.
    * ``broker_transport_options``: the visibility timeout, and a sweep for tasks to redeliver
      every 10 s (kombu's default sweeps every 100 s).
    * publishing, connecting and reading results retry for about a minute
      (:data:`BROKER_RETRY_POLICY`), so a broker that restarts within that time costs waiting,
      not failed runs.

    Returns:
        The settings, for ``Celery(config_source=...)`` and ``dagster_celery``'s ``config_source``.

    Raises:
        InvalidCubeConfig: when ``CUBE_ASSETS_CELERY_VISIBILITY_TIMEOUT_S`` is invalid.
    """
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "dagster",
        "task_default_priority": 5,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout_s(environ),
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            **BROKER_RETRY_POLICY,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": dict(BROKER_RETRY_POLICY),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend_always_retry": True,
        "result_backend_max_retries": BROKER_RETRY_POLICY["max_retries"],
        "result_backend_max_sleep_between_retries_ms": 2000,
    }


def _url_setting(environ: Mapping[str, str], variable: str, default: str) -> str | dict[str, str]:
    """``{"env": variable}`` when it is set (resolved when a run starts), else ``default``."""
    return {"env": variable} if environ.get(variable) else default


def celery_executor_definition(environ: Mapping[str, str]) -> ExecutorDefinition:
    """Return ``dagster_celery``'s executor configured with :func:`celery_settings` and the broker of ``environ``.

    Step retries (Dagster's retry policies) stay enabled.

    Raises:
        InvalidCubeConfig: when a Celery variable is invalid.
    """
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": _url_setting(environ, BROKER_VARIABLE, DEFAULT_BROKER),
            "backend": _url_setting(environ, BACKEND_VARIABLE, DEFAULT_BACKEND),
            "config_source": celery_settings(environ),
            "retries": {"enabled": {}},
        },
        name="celery",
    )


def executor_named(name: str, environ: Mapping[str, str]) -> ExecutorDefinition:
    """Return the executor called ``name`` (one of ``EXECUTORS``).

    ``k8s`` runs every step in its own Kubernetes pod (``dagster_k8s.k8s_job_executor``, for the
    Helm deployment); ``celery`` sends every step to Celery workers
    (:func:`celery_executor_definition`, configured from ``environ``).

    Raises:
        InvalidCubeConfig: naming ``CUBE_ASSETS_EXECUTOR`` when ``name`` is unknown.
    """
    if name == "multiprocess":
        return multiprocess_executor
    if name == "in_process":
        return in_process_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery":
        return celery_executor_definition(environ)
    raise InvalidCubeConfig(f"CUBE_ASSETS_EXECUTOR={name!r}: must be one of {', '.join(EXECUTORS)}")
