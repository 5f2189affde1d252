"""The Celery app of the workers: ``dagster-celery worker start -A cube_assets.celery_app`` (or ``make worker``).

It is ``dagster_celery``'s app (its ``execute_plan`` task runs one step of a run) with the
broker, result backend and settings a run's executor uses (``cube_assets.executors``), read from
this process's environment: ``CUBE_ASSETS_CELERY_BROKER``, ``CUBE_ASSETS_CELERY_BACKEND``,
``CUBE_ASSETS_CELERY_VISIBILITY_TIMEOUT_S``. A task loads the run's job from
``cube_assets.definitions`` in the worker, so the worker needs the same cube file and storage
variables as the run (``CUBE_ENV=prod``, ``CUBE_ASSETS_EXECUTOR=celery``) and a data root of its
own (``CUBE_ASSETS_DATA_ROOT``); Dagster's instance comes with each task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from celery import Celery
from dagster_celery.config import dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from cube_assets.executors import BACKEND_VARIABLE, BROKER_VARIABLE, DEFAULT_BACKEND, DEFAULT_BROKER, celery_settings


def build_app(environ: Mapping[str, str]) -> Celery:
    """Return ``dagster_celery``'s app, with its ``execute_plan`` task, configured from ``environ``.

    Raises:
        InvalidCubeConfig: when a Celery variable is invalid.
    """
    app = make_app(
        {
            "broker": environ.get(BROKER_VARIABLE) or DEFAULT_BROKER,
            "backend": environ.get(BACKEND_VARIABLE) or DEFAULT_BACKEND,
            "include": [],
            "config_source": dict_wrapper(celery_settings(environ)),
        }
    )
    create_task(app)
    return app


app = build_app(os.environ)
