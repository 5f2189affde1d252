"""A real S3 API server for the tests: moto's standalone server over HTTP on loopback (registered in ``conftest.py``).

``s3_server`` starts ``moto.server`` once per session in its own process, on 127.0.0.1 and a
free port. It runs in a separate process rather than as a thread (``ThreadedMotoServer``) so that
GDAL, which reads ``/vsis3/`` objects over HTTP from the test process, never waits on a server
thread that needs the test process's GIL, and so that subprocesses (crash tests, Dagster's
multiprocess executor, Celery workers) reach the same objects. Nothing is mocked: boto3 and GDAL
talk HTTP to it exactly as they would to any S3-compatible server.

Fixtures:

* ``s3_server``: the running server (:class:`S3Server`): endpoint, credentials, a boto3 client.
* ``s3_bucket``: a new, empty bucket for one test.
* ``s3_env``: the environment variables ``CUBE_ENV=prod`` definitions read, pointed at
  ``s3_bucket`` (set with ``monkeypatch``; a dict of them is returned for subprocesses).

If the server cannot start, its tests are skipped locally but fail when ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from cube_assets_tests.fixtures_postgres import free_tcp_port


def s3_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it on CI (``CI=true``) where S3 must be tested."""
    message = f"S3 test server unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class S3Server:
    """A running S3 API server on loopback and the (dummy) credentials it accepts."""

    endpoint_url: str
    #: The server's request log (one werkzeug line per request: method, path, status).
    log_path: Path | None = None
    access_key_id: str = "cube-assets-test"
    secret_access_key: str = "cube-assets-test-secret"
    region: str = "us-east-1"

    def client(self) -> Any:
        """Return a boto3 S3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a new, empty bucket ``{prefix}-{random}``; return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def store(self, bucket: str, prefix: str = "", **options: Any) -> Any:
        """Return an ``S3RasterStore`` on ``bucket`` of this server."""
        from cube_assets.storage.s3_store import S3RasterStore

        return S3RasterStore(
            bucket,
            prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            **options,
        )

    def environment(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Return the environment variables that point ``CUBE_ENV=prod`` definitions at ``bucket``."""
        return {
            "CUBE_ENV": "prod",
            "CUBE_ASSETS_S3_BUCKET": bucket,
            "CUBE_ASSETS_S3_PREFIX": prefix,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "CUBE_ASSETS_S3_ACCESS_KEY_ID": self.access_key_id,
            "CUBE_ASSETS_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def object_keys(self, bucket: str) -> list[str]:
        """Return the keys of every complete object in ``bucket``, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(o["Key"] for page in paginator.paginate(Bucket=bucket) for o in page.get("Contents", []))

    def requests(self, method: str, path: str) -> list[int]:
        """Return the HTTP status of every ``method`` request for ``path`` (``/bucket/key``) logged so far."""
        assert self.log_path is not None, "this server has no request log"
        statuses = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            # werkzeug: 127.0.0.1 - - [date] "GET /bucket/key?query HTTP/1.1" 206 -   (possibly with colour codes)
            if f"{method} {path} " in line or f"{method} {path}?" in line:
                statuses.append(int(line.rsplit('"', 1)[-1].split()[0]))
        return statuses

    def incomplete_uploads(self, bucket: str) -> list[str]:
        """Return the keys of multipart uploads in ``bucket`` that were started but never completed."""
        return sorted(u["Key"] for u in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _wait_until_serving(
    server: S3Server, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0
) -> str | None:
    """Return None once the server answers ``ListBuckets``, or why it did not."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}"
        try:
            server.client().list_buckets()
            return None
        except Exception as exc:  # not up yet
            last_error = str(exc)
            time.sleep(0.2)
    return f"no answer within {timeout_s:.0f} s: {last_error}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 and a free port, for the whole session (see the module docstring)."""
    try:
        import boto3  # noqa: F401 - imported only to learn whether it is installed
        import moto.server  # noqa: F401 - imported only to learn whether it is installed
    except ImportError as exc:
        s3_unavailable(f"{exc.name} is not installed (pip install 'moto[server]>=5,<6' boto3)")
    folder = Path(tempfile.mkdtemp(prefix="cube-s3-"))
    log = folder / "moto.log"
    failure = ""
    for _attempt in range(3):  # another process may take the free port before the server binds it
        port = free_tcp_port()
        server = S3Server(endpoint_url=f"http://127.0.0.1:{port}", log_path=log)
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MOTO_PORT": str(port)},
            )
        failure = _wait_until_serving(server, process, log) or ""
        if not failure:
            break
        process.kill()
        process.wait(timeout=30)
    else:
        s3_unavailable(f"moto server did not start: {failure}")
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.unlink(missing_ok=True)
        folder.rmdir()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the test server."""
    return s3_server.create_bucket()


@pytest.fixture
def s3_env(s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set (for this test) and return the variables that point ``CUBE_ENV=prod`` storage at ``s3_bucket``."""
    environment = s3_server.environment(s3_bucket, prefix="cubes")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment
