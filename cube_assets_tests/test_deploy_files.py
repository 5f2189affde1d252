"""The deployment files: every file in deploy/ parses, and what they name exists in the project.

No Docker engine and no Kubernetes cluster run here, so the images are not built and the chart
is not rendered: the tests read the files and check them against the project (modules, ports,
variables the code reads, the Dockerfile's sources), against the configuration schemas of
Dagster and dagster-k8s, and, for the compose file's environment, by loading the production
instance (deploy/dagster.yaml) on a real PostgreSQL server. The Helm chart's value names are
checked against the field lists of the chart's own schema (helm/dagster/schema in the Dagster
repository, 1.13), copied below.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from cube_assets.cube_config import DEMO_CONFIG
from cube_assets.definitions import build_definitions, cube_job_name
from cube_assets.errors import InvalidCubeConfig
from cube_assets_tests.conftest import REPO_ROOT
from cube_assets_tests.fixtures_postgres import PostgresServer

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
CELERY_WORKERS = DEPLOY / "kubernetes" / "celery-workers.yaml"
CODE_SERVER_PORT = 4000
PROJECT_SERVICES = ("code_location", "webserver", "daemon")
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCKERFILE_INSTRUCTIONS = {
    "FROM",
    "ARG",
    "ENV",
    "WORKDIR",
    "COPY",
    "ADD",
    "RUN",
    "USER",
    "EXPOSE",
    "CMD",
    "ENTRYPOINT",
    "LABEL",
    "VOLUME",
    "HEALTHCHECK",
    "SHELL",
    "STOPSIGNAL",
    "ONBUILD",
}
# Variables of third-party images and clients, by who reads them.
THIRD_PARTY_VARIABLES = {
    "postgres": {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"},  # the postgres/postgis image
    "s3": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},  # the MinIO server image
}
# Fields of the Dagster Helm chart's values (helm/dagster/schema/schema/charts, Dagster 1.13).
CHART_TOP_LEVEL = {
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "global",
    "retention",
    "concurrency",
    "additionalInstanceConfig",
}
CHART_USER_DEPLOYMENT = {
    "name",
    "image",
    "dagsterApiGrpcArgs",
    "codeServerArgs",
    "includeConfigInLaunchedRuns",
    "deploymentNamespace",
    "port",
    "replicaCount",
    "env",
    "envConfigMaps",
    "envSecrets",
    "annotations",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "labels",
    "volumeMounts",
    "volumes",
    "schedulerName",
    "initContainers",
    "sidecarContainers",
    "deploymentStrategy",
}
CHART_K8S_RUN_LAUNCHER = {
    "image",
    "imagePullPolicy",
    "jobNamespace",
    "loadInclusterConfig",
    "kubeconfigFile",
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "volumeMounts",
    "volumes",
    "labels",
    "failPodOnRunFailure",
    "resources",
    "schedulerName",
    "securityContext",
    "runK8sConfig",
}
CHART_RUN_K8S_CONFIG = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
CHART_POSTGRESQL = {
    "postgresqlScheme",
    "image",
    "enabled",
    "postgresqlHost",
    "postgresqlUsername",
    "postgresqlPassword",
    "postgresqlDatabase",
    "postgresqlParams",
    "service",
}
CHART_GLOBAL = {
    "postgresqlSecretName",
    "dagsterHome",
    "serviceAccountName",
    "celeryConfigSecretName",
    "dagsterInstanceConfigMap",
}
CHART_CONCURRENCY = {
    "enabled": None,
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
}


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _project_sources() -> str:
    """Every Python source of the package and the production instance file: where variables are read."""
    texts = [p.read_text() for p in (REPO_ROOT / "cube_assets").rglob("*.py")]
    return "\n".join(texts + [(DEPLOY / "dagster.yaml").read_text()])


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current)
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0], line.split(None, 1)[1] if " " in line else "") for line in logical]


def _compose_value(value: str) -> str:
    """Resolve ``${NAME:-default}`` to its default, as compose does when the variable is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def _helm_deployment() -> dict:
    (deployment,) = _yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    return deployment


# -------------------------------------------------------------------------------------------- every file


def test_every_file_in_deploy_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "Dockerfile",
        "docker-compose.yml",
        "helm/values.yaml",
        "workspace.yaml",
        "dagster.yaml",
    }
    for path in files:
        if path.suffix in (".yaml", ".yml"):
            documents = list(yaml.safe_load_all(path.read_text()))  # Kubernetes manifests hold several
            assert documents and all(isinstance(document, dict) for document in documents), path
        elif path.name == "Dockerfile":
            instructions = _dockerfile_instructions()
            assert instructions[0][0] == "FROM"
            assert {name for name, _ in instructions} <= DOCKERFILE_INSTRUCTIONS
            for name, arguments in instructions:
                if name in ("CMD", "ENTRYPOINT") and arguments.startswith("["):
                    assert isinstance(json.loads(arguments), list)
        else:
            pytest.fail(f"{path}: no parser for this kind of deploy file; add one to this test")


# -------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_copies_sources_that_exist_and_starts_the_code_location():
    instructions = _dockerfile_instructions()
    copies = [arguments.split() for name, arguments in instructions if name == "COPY"]
    for *sources, _destination in copies:
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the build context (the repository root)"
    (cmd,) = [json.loads(arguments) for name, arguments in instructions if name == "CMD"]
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("--module-name") + 1] == "cube_assets.definitions"
    assert importlib.util.find_spec("cube_assets.definitions") is not None
    assert int(cmd[cmd.index("--port") + 1]) == CODE_SERVER_PORT
    assert [arguments for name, arguments in instructions if name == "EXPOSE"] == [str(CODE_SERVER_PORT)]
    (install,) = [arguments for name, arguments in instructions if name == "RUN" and "pip install" in arguments]
    assert '".[k8s]"' in install  # dagster-k8s: the K8sRunLauncher and k8s_job_executor of the Helm values
    assert "dagster-aws" in install  # the S3ComputeLogManager of the Helm values


# -------------------------------------------------------------------------------------------- compose


def test_compose_runs_postgis_s3_webserver_daemon_and_the_code_location_image():
    services = _yaml(COMPOSE)["services"]
    assert set(services) >= {"postgres", "s3", *PROJECT_SERVICES}
    assert services["postgres"]["image"].startswith("postgis/postgis:")
    assert services["s3"]["image"].startswith("minio/minio:")
    for name in PROJECT_SERVICES:
        service = services[name]
        assert _compose_value(service["image"]) == f"cube-assets:{VERSION}", name
        assert (
            COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
        ).resolve() == DEPLOY / "Dockerfile"
    assert services["webserver"]["ports"] == ["3000:3000"]
    assert "--port" in services["webserver"]["command"] and "3000" in services["webserver"]["command"]


def test_compose_workspace_points_at_the_code_location_service_and_port():
    services = _yaml(COMPOSE)["services"]
    (location,) = _yaml(DEPLOY / "workspace.yaml")["load_from"]
    server = location["grpc_server"]
    assert server["host"] in services
    assert server["port"] == CODE_SERVER_PORT
    command = services[server["host"]]["command"]
    assert int(command[command.index("--port") + 1]) == CODE_SERVER_PORT
    assert command[command.index("--location-name") + 1] == server["location_name"]
    # The webserver and the daemon read the workspace where the Dockerfile copies it.
    copied = {dest for name, args in _dockerfile_instructions() if name == "COPY" for *_, dest in [args.split()]}
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("--workspace") + 1] in copied


def test_compose_variables_are_read_by_the_project_or_their_image():
    services = _yaml(COMPOSE)["services"]
    sources = _project_sources()
    for name, service in services.items():
        environment = service.get("environment", {})
        for variable in environment:
            if variable in THIRD_PARTY_VARIABLES.get(name, set()):
                continue
            if name == "s3_bucket":  # the one-shot script uses what it defines
                assert f"${{{variable}}}" in " ".join(service["entrypoint"]), variable
                continue
            assert re.search(rf"\b{variable}\b", sources), f"{name}: {variable} is read nowhere in the project"
    # Every variable the instance file reads is given to every service that loads the instance.
    instance_variables = set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))
    assert instance_variables
    for name in PROJECT_SERVICES:
        assert instance_variables <= set(services[name]["environment"]), name


def test_compose_endpoints_name_services_and_ports_that_exist():
    services = _yaml(COMPOSE)["services"]
    environment = {k: _compose_value(v) for k, v in services["code_location"]["environment"].items()}
    assert environment["AWS_ENDPOINT_URL"] == "http://s3:9000" and "9000:9000" in services["s3"]["ports"]
    assert environment["DAGSTER_PG_HOST"] == "postgres"
    catalog = re.match(r"postgresql://(\w+):([^@]+)@(\w+):(\d+)/(\w+)$", environment["CUBE_ASSETS_CATALOG_URL"])
    assert catalog and catalog.group(3) == "postgres" and catalog.group(5) == environment["DAGSTER_PG_DB"]
    assert environment["CUBE_ENV"] == "prod"
    assert environment["CUBE_ASSETS_EXECUTOR"] == "celery"
    volumes = services["code_location"]["volumes"]
    assert any(
        v.startswith("${CUBE_FILE:-../cube_assets/cubes/demo.yaml}:" + environment["CUBE_ASSETS_CONFIG"])
        for v in volumes
    )
    assert (COMPOSE.parent / "../cube_assets/cubes/demo.yaml").resolve() == DEMO_CONFIG


def test_compose_workers_take_the_steps_from_the_broker_with_the_runs_settings():
    services = _yaml(COMPOSE)["services"]
    worker, code_location = services["worker"], services["code_location"]
    # The same variables as the runs: the worker loads the same definitions to run their steps.
    assert worker["environment"] == code_location["environment"]
    command = worker["command"]
    assert command[:3] == ["dagster-celery", "worker", "start"]
    app = command[command.index("-A") + 1]
    assert importlib.util.find_spec(app) is not None
    assert "--concurrency=1" in command
    environment = {k: _compose_value(v) for k, v in worker["environment"].items()}
    for variable in ("CUBE_ASSETS_CELERY_BROKER", "CUBE_ASSETS_CELERY_BACKEND"):
        assert re.match(r"redis://broker:6379/\d$", environment[variable]), variable
    assert "--appendonly" in services["broker"]["command"]  # queued tasks survive a restart of the broker
    # Scaled replicas share no data root: the worker mounts nothing writable.
    assert all(volume.endswith(":ro") for volume in worker["volumes"])
    assert "deploy" not in worker and "container_name" not in worker  # `--scale worker=N` needs neither


def test_compose_environment_loads_the_production_instance(postgresql_server: PostgresServer, tmp_path, monkeypatch):
    """deploy/dagster.yaml, with the variable names the compose file gives, against a real PostgreSQL."""
    database = postgresql_server.create_database("compose")
    values = {
        "DAGSTER_PG_HOST": postgresql_server.host,
        "DAGSTER_PG_PORT": str(postgresql_server.port),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": postgresql_server.username,
        "DAGSTER_PG_PASSWORD": postgresql_server.password or "unused-with-trust",
    }
    for variable in _yaml(COMPOSE)["services"]["daemon"]["environment"]:
        monkeypatch.setenv(
            variable, values[variable]
        )  # a KeyError here: compose gives a variable the test does not know
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    try:
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert instance.get_runs() == []
    finally:
        postgresql_server.drop_database(database)


# -------------------------------------------------------------------------------------------- Helm


def test_helm_values_use_only_names_the_chart_knows():
    values = _yaml(HELM_VALUES)
    assert set(values) <= CHART_TOP_LEVEL
    assert set(_helm_deployment()) <= CHART_USER_DEPLOYMENT
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= CHART_K8S_RUN_LAUNCHER
    assert set(launcher["runK8sConfig"]) <= CHART_RUN_K8S_CONFIG
    assert set(values["postgresql"]) <= CHART_POSTGRESQL
    assert set(values["global"]) <= CHART_GLOBAL
    for key, fields in values["concurrency"].items():
        assert key in CHART_CONCURRENCY
        if CHART_CONCURRENCY[key] is not None:
            assert set(fields) <= CHART_CONCURRENCY[key]


def test_helm_code_location_runs_the_project_image_module_and_port():
    deployment = _helm_deployment()
    compose_image = _compose_value(_yaml(COMPOSE)["services"]["code_location"]["image"])
    assert (
        f"{deployment['image']['repository']}:{deployment['image']['tag']}" == compose_image == f"cube-assets:{VERSION}"
    )
    assert deployment["port"] == CODE_SERVER_PORT
    arguments = deployment["codeServerArgs"]
    assert arguments[arguments.index("--module-name") + 1] == "cube_assets.definitions"
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    environment = {item["name"]: item["value"] for item in deployment["env"]}
    assert environment["CUBE_ENV"] == "prod"  # S3 for every IO manager, PostgreSQL for the catalog
    assert environment["CUBE_ASSETS_EXECUTOR"] == "k8s"
    sources = _project_sources()
    for variable in environment:
        assert re.search(rf"\b{variable}\b", sources), f"{variable} is read nowhere in the project"
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    assert environment["CUBE_ASSETS_CONFIG"].startswith(mounts["cubes"] + "/")
    assert environment["CUBE_ASSETS_DATA_ROOT"] == mounts["scratch"]


def _manifests(path: Path) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(path.read_text())}


def test_kubernetes_workers_run_the_compose_workers_command_on_the_helm_image_and_broker():
    manifests = _manifests(CELERY_WORKERS)
    (container,) = manifests["Deployment/cube-assets-worker"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == _yaml(COMPOSE)["services"]["worker"]["command"]
    deployment = _helm_deployment()
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    environment = {item["name"]: item.get("value") for item in container["env"]}
    assert environment["CUBE_ASSETS_EXECUTOR"] == "celery"
    # The code location's variables (executor aside) and Secret, so a task loads the same definitions.
    helm_environment = {item["name"]: item["value"] for item in deployment["env"]}
    for name, value in helm_environment.items():
        if name not in ("CUBE_ASSETS_EXECUTOR", "CUBE_ASSETS_LATE_SCENE_DELAY_HOURS", "CUBE_ASSETS_SENSOR_INTERVAL_S"):
            assert environment[name] == value, name
    assert container["envFrom"] == [{"secretRef": {"name": s["name"]}} for s in deployment["envSecrets"]]
    sources = _project_sources()
    for variable in environment:
        assert re.search(rf"\b{variable}\b", sources), f"{variable} is read nowhere in the project"
    service = manifests["Service/cube-assets-broker"]
    port = service["spec"]["ports"][0]["port"]
    for variable in ("CUBE_ASSETS_CELERY_BROKER", "CUBE_ASSETS_CELERY_BACKEND"):
        assert re.match(rf"redis://{service['metadata']['name']}:{port}/\d$", environment[variable]), variable
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert environment["CUBE_ASSETS_DATA_ROOT"] == mounts["scratch"]
    volumes = {v["name"]: v for v in manifests["Deployment/cube-assets-worker"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}  # each pod's own data root


def test_helm_secrets_come_from_kubernetes_secrets():
    values = _yaml(HELM_VALUES)
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["global"]["postgresqlSecretName"]
    secrets = {s["name"] for s in _helm_deployment()["envSecrets"]}
    assert secrets == {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]}
    text = HELM_VALUES.read_text()
    for secret_variable in (
        "CUBE_ASSETS_CATALOG_URL",
        "CUBE_ASSETS_S3_ACCESS_KEY_ID",
        "CUBE_ASSETS_S3_SECRET_ACCESS_KEY",
    ):
        assert not re.search(rf"name: {secret_variable}\b", text), f"{secret_variable} must come from a Secret"
        assert re.search(rf"\b{secret_variable}\b", _project_sources())
    bucket = {item["name"]: item["value"] for item in _helm_deployment()["env"]}["CUBE_ASSETS_S3_BUCKET"]
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["computeLogManager"]["config"]["s3ComputeLogManager"]["bucket"] == bucket


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_helm_run_launcher_is_valid_k8s_run_launcher_config_with_per_run_resources():
    """The instance's run_launcher config the chart renders from these values, checked by dagster-k8s's schema."""
    from dagster._config import process_config
    from dagster._core.definitions.definition_config_schema import convert_user_facing_definition_config_schema
    from dagster_k8s import K8sRunLauncher

    launcher = _yaml(HELM_VALUES)["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    values = launcher["config"]["k8sRunLauncher"]
    rendered = {
        "instance_config_map": "cube-assets-dagster-instance",  # written by the chart
        "service_account_name": "cube-assets-dagster",  # written by the chart
        "job_namespace": values["jobNamespace"],
        "load_incluster_config": values["loadInclusterConfig"],
        "image_pull_policy": values["imagePullPolicy"],
        "env_secrets": [s["name"] for s in values["envSecrets"]],
        "run_k8s_config": {_camel_to_snake(k): v for k, v in values["runK8sConfig"].items()},
    }
    schema = convert_user_facing_definition_config_schema(K8sRunLauncher.config_type()).config_type
    result = process_config(schema, rendered)
    assert result.success, [e.message for e in result.errors]
    resources = values["runK8sConfig"]["containerConfig"]["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]


def test_helm_concurrency_renders_to_an_instance_dagster_loads(tmp_path):
    """The chart's ``concurrency`` block as instance settings (camelCase to snake_case), loaded by Dagster."""
    concurrency = _yaml(HELM_VALUES)["concurrency"]
    assert concurrency["enabled"] is True
    runs = concurrency["runs"]
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "concurrency": {
                    "runs": {
                        "max_concurrent_runs": runs["maxConcurrentRuns"],
                        "tag_concurrency_limits": runs["tagConcurrencyLimits"],
                    },
                    "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
                },
                "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
            }
        )
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 16
        assert {limit["key"] for limit in config.run_queue_config.tag_concurrency_limits} == {
            "dagster/partition",
            "dagster/backfill",
        }
        assert config.pool_config.default_pool_limit == 8


# -------------------------------------------------------------------------------------------- executors


@pytest.mark.parametrize(
    "name, executor",
    [("k8s", "k8s"), ("celery", "celery"), ("in_process", "in_process"), ("multiprocess", "multiprocess")],
)
def test_the_executor_comes_from_its_setting(tmp_path, name, executor):
    defs = build_definitions(DEMO_CONFIG, tmp_path, executor=name)
    assert defs.resolve_job_def(cube_job_name("s2_demo")).executor_def.name == executor


def test_an_unknown_executor_is_refused_with_the_variable_name(tmp_path):
    with pytest.raises(InvalidCubeConfig, match="CUBE_ASSETS_EXECUTOR='dask'"):
        build_definitions(DEMO_CONFIG, tmp_path, executor="dask")


# -------------------------------------------------------------------------------------------- the STAC API

API_MANIFEST = DEPLOY / "k8s" / "api.yaml"


def _app_status(path: str) -> int:
    """The status the API (over an empty in-memory catalog) answers ``GET path`` with."""
    from fastapi.testclient import TestClient

    from cube_assets.client import Catalog
    from cube_assets.service.app import create_app
    from cube_assets.service.settings import ServiceSettings

    with Catalog("sqlite://") as catalog, TestClient(create_app(ServiceSettings("sqlite://"), catalog=catalog)) as http:
        return http.get(path).status_code


def _serve_arguments(command: list[str]) -> object:
    from cube_assets import cli

    assert command[:2] == ["cube-assets", "serve"], command
    return cli.build_parser().parse_args(command[1:])


def test_compose_serves_the_stac_api_over_the_code_locations_catalog():
    services = _yaml(COMPOSE)["services"]
    api = services["api"]
    arguments = _serve_arguments(api["command"])
    assert _compose_value(api["image"]) == f"cube-assets:{VERSION}"
    assert arguments.host == "0.0.0.0" and api["ports"] == [f"{arguments.port}:{arguments.port}"]
    assert api["environment"]["CUBE_ENV"] == "prod"
    assert (
        api["environment"]["CUBE_ASSETS_CATALOG_URL"]
        == services["code_location"]["environment"]["CUBE_ASSETS_CATALOG_URL"]
    )
    assert api["environment"]["AWS_ENDPOINT_URL"] == services["code_location"]["environment"]["AWS_ENDPOINT_URL"]
    probe = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", " ".join(api["healthcheck"]["test"]))
    assert probe and int(probe.group(1)) == arguments.port and _app_status(probe.group(2)) == 200


def test_kubernetes_runs_the_api_as_a_deployment_and_service_reading_the_chart_secret():
    manifest = _yaml(API_MANIFEST)
    kinds = {item["kind"]: item for item in manifest["items"]}
    assert manifest["kind"] == "List" and set(kinds) == {"Deployment", "Service"}
    deployment, service = kinds["Deployment"], kinds["Service"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    arguments = _serve_arguments(container["command"])
    (user_deployment,) = _yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    image = user_deployment["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    secrets = {secret["secretRef"]["name"] for secret in container["envFrom"]}
    assert secrets == {entry["name"] for entry in user_deployment["envSecrets"]}  # the catalog URL's Secret
    assert {"name": "CUBE_ENV", "value": "prod"} in container["env"]
    (port,) = container["ports"]
    assert arguments.host == "0.0.0.0" and port["containerPort"] == arguments.port
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for probe in ("readinessProbe", "livenessProbe"):
        assert _app_status(container[probe]["httpGet"]["path"]) == 200
        assert container[probe]["httpGet"]["port"] == port["name"]
