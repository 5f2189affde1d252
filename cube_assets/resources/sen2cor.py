"""The Sen2Cor resource: turns a Sentinel-2 Level-1C product into Level-2A with Sen2Cor in Docker.

Each run is a ``docker run --rm --name <unique>`` of one image (see
:mod:`cube_assets.formats.sen2cor` for the image contract and the command). Versions are tried
in the configured order until one produces a valid L2A product; a run that exceeds
``timeout_seconds`` is stopped (``docker stop``, then ``docker kill``) and the scene fails at
once, without trying older versions: a hung run usually means a host problem (disk, memory,
a stalled mount) that another version would hit too, and each attempt would hold a slot of
the ``sen2cor`` concurrency pool for the whole timeout. A step interrupted while a container
runs (a cancelled Dagster run) stops the container the same way before giving up.

The product is written into a hidden work folder inside ``output_dir`` and renamed into
place once validated, so ``output_dir`` only ever holds complete products; a valid product
already there for the same L1C is reused without running Sen2Cor again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from cube_assets.errors import InvalidScene
from cube_assets.formats.sen2cor import (
    DEFAULT_IMAGE,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_VERSIONS,
    L2A_BANDS,
    Sen2CorAttempt,
    Sen2CorError,
    Sen2CorOutput,
    Sen2CorTimeout,
    attempts,
    build_docker_command,
    container_name,
    find_l2a_product,
    validate_l2a_product,
)
from cube_assets.formats.sentinel2_safe import ProductMetadata, parse_product_metadata

_LOG_TAIL_CHARS = 2000


class Sen2CorResource(ConfigurableResource):
    """Sen2Cor in Docker: image, versions to try, timeout, and the host paths it mounts."""

    output_dir: str = Field(description="Where validated Level-2A products are kept (one .SAFE per L1C).")
    image: str = Field(
        default=DEFAULT_IMAGE, description="Image without a tag (versions are appended) or with one (used as is)."
    )
    versions: list[str] = Field(default=list(DEFAULT_VERSIONS), description="Sen2Cor versions to try, in order.")
    timeout_seconds: int = Field(
        default=DEFAULT_TIMEOUT_SECONDS, gt=0, description="A run is stopped after this many seconds."
    )
    stop_grace_seconds: int = Field(
        default=30, ge=0, description="`docker stop --time`: seconds between SIGTERM and SIGKILL."
    )
    cci_dir: str | None = Field(default=None, description="Host folder of the unpacked CCI4SEN2COR auxiliary data.")
    gipp_path: str | None = Field(default=None, description="Host L2A_GIPP.xml mounted over the image's own.")
    docker: str = Field(default="docker", description="The docker executable (a name on PATH or a path).")
    docker_user: str | None = Field(
        default=None, description="`docker run --user`, e.g. '1000:1000' so outputs are not root's."
    )

    def to_l2a(self, l1c_path: str | os.PathLike[str]) -> Sen2CorOutput:
        """Return the Level-2A product of the Level-1C ``.SAFE`` at ``l1c_path``, running Sen2Cor if needed.

        Returns:
            Where the validated L2A product is, which version and image made it, and whether
            it was reused from ``output_dir``.

        Raises:
            InvalidScene: if ``l1c_path`` is not a readable Level-1C product.
            Sen2CorTimeout: naming the scene, if a run exceeded ``timeout_seconds`` (the
                container is stopped first).
            Sen2CorError: naming the scene and every version's failure, if no version produced
                a valid product; or if docker, ``cci_dir`` or ``gipp_path`` cannot be found.
        """
        l1c_path = Path(l1c_path).resolve()  # mount the real folder, not a symbolic link to it
        l1c = parse_product_metadata(l1c_path)
        if l1c.product_type != "L1C":
            raise InvalidScene(f"{l1c.product_id}: is {l1c.product_type}; Sen2Cor needs a Level-1C product")
        output_dir = Path(self.output_dir).resolve()
        existing = self._existing(output_dir, l1c)
        if existing is not None:
            return existing
        docker = self._docker_executable()
        cci_dir, gipp_path = self._aux_paths()
        output_dir.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for attempt in attempts(self.image, self.versions):
            work_dir = output_dir / f".sen2cor-{uuid.uuid4().hex[:12]}"
            work_dir.mkdir()
            try:
                failure = self._run_once(docker, attempt, l1c, l1c_path, work_dir, cci_dir, gipp_path)
                if failure is None:
                    return self._publish(output_dir, work_dir, l1c, attempt)
                failures.append(f"{attempt.reference}: {failure}")
                get_dagster_logger().warning(f"{l1c.product_id}: Sen2Cor {attempt.reference} failed: {failure}")
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
        raise Sen2CorError(
            f"{l1c.product_id}: no Sen2Cor version produced a valid Level-2A product: " + "; ".join(failures)
        )

    # -- one run -----------------------------------------------------------------------------

    def _run_once(
        self,
        docker: str,
        attempt: Sen2CorAttempt,
        l1c: ProductMetadata,
        l1c_path: Path,
        work_dir: Path,
        cci_dir: Path | None,
        gipp_path: Path | None,
    ) -> str | None:
        """Run one image; return ``None`` when it produced a valid product, else why not."""
        name = container_name(l1c.product_id, attempt.version, uuid.uuid4().hex[:8])
        output = work_dir / "output"
        output.mkdir()
        command = build_docker_command(
            docker=docker,
            reference=attempt.reference,
            version=attempt.version,
            l1c_path=l1c_path,
            output_dir=output,
            name=name,
            cci_dir=cci_dir,
            gipp_path=gipp_path,
            user=self.docker_user,
        )
        log_path = work_dir / "sen2cor.log"
        get_dagster_logger().info(f"{l1c.product_id}: running {' '.join(command)}")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                returncode = process.wait(timeout=self.timeout_seconds)
            except subprocess.TimeoutExpired:
                self._stop(docker, name, process)
                raise Sen2CorTimeout(
                    f"{l1c.product_id}: Sen2Cor {attempt.reference} ran longer than {self.timeout_seconds} s; "
                    f"container {name} was stopped. Last output: {_tail(log_path)}"
                ) from None
            except BaseException:  # the run was cancelled (Dagster interrupts the step): no orphan container
                self._stop(docker, name, process)
                raise
        if returncode != 0:
            return f"exit status {returncode}: {_tail(log_path)}"
        try:
            product = find_l2a_product(output, l1c)
            if product is None:
                return f"exited 0 but wrote no Level-2A product for {l1c.product_id}: {_tail(log_path)}"
            validate_l2a_product(product, l1c, expected_bands=L2A_BANDS)
        except (InvalidScene, Sen2CorError) as exc:
            return f"invalid output: {exc}"
        return None

    def _stop(self, docker: str, name: str, process: subprocess.Popen) -> None:
        """Stop container ``name`` (``docker stop``, else ``docker kill``) and reap the client."""
        logger = get_dagster_logger()
        stop = [docker, "stop", "--time", str(self.stop_grace_seconds), name]
        for command, limit in ((stop, self.stop_grace_seconds + 60), ([docker, "kill", name], 60)):
            logger.warning(f"Sen2Cor timeout: {' '.join(command)}")
            try:
                done = subprocess.run(command, capture_output=True, timeout=limit, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                logger.warning(f"{' '.join(command)} failed: {exc}")
                continue
            if done.returncode == 0:
                break
            logger.warning(
                f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}"
            )
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the client outlived its container: end it ourselves
            process.kill()
            process.wait()

    # -- outputs -----------------------------------------------------------------------------

    def _existing(self, output_dir: Path, l1c: ProductMetadata) -> Sen2CorOutput | None:
        found = find_l2a_product(output_dir, l1c)
        if found is None:
            return None
        try:
            product = validate_l2a_product(found, l1c, expected_bands=L2A_BANDS)
        except InvalidScene as exc:
            get_dagster_logger().warning(f"{l1c.product_id}: ignoring the invalid Level-2A product {found}: {exc}")
            return None
        return Sen2CorOutput(l1c.product_id, found, product.product_id, None, None, reused=True)

    def _publish(
        self, output_dir: Path, work_dir: Path, l1c: ProductMetadata, attempt: Sen2CorAttempt
    ) -> Sen2CorOutput:
        produced = find_l2a_product(work_dir / "output", l1c)
        assert produced is not None  # checked by _run_once
        target = output_dir / produced.name
        stale = find_l2a_product(output_dir, l1c)
        if stale is not None:  # invalid (see _existing): keep it out of the way of the new one
            retired = output_dir / f".{stale.name}.{uuid.uuid4().hex[:8]}.invalid"
            with contextlib.suppress(OSError):
                os.rename(stale, retired)
                shutil.rmtree(retired, ignore_errors=True)
        try:
            os.rename(produced, target)
        except OSError:
            existing = self._existing(output_dir, l1c)  # another run finished the same scene first
            if existing is None:
                raise
            return existing
        product = validate_l2a_product(target, l1c, expected_bands=L2A_BANDS)
        get_dagster_logger().info(f"{l1c.product_id}: Sen2Cor {attempt.reference} produced {target.name}")
        return Sen2CorOutput(
            l1c.product_id, target, product.product_id, attempt.version, attempt.reference, reused=False
        )

    # -- configuration -----------------------------------------------------------------------

    def _docker_executable(self) -> str:
        found = shutil.which(self.docker)
        if found is None:
            raise Sen2CorError(f"docker executable {self.docker!r} not found (PATH or path); Sen2Cor runs in Docker")
        return found

    def _aux_paths(self) -> tuple[Path | None, Path | None]:
        cci = Path(self.cci_dir).resolve() if self.cci_dir else None
        gipp = Path(self.gipp_path).resolve() if self.gipp_path else None
        if cci is not None and not cci.is_dir():
            raise Sen2CorError(f"Sen2Cor cci_dir {self.cci_dir}: no such folder (the unpacked CCI4SEN2COR data)")
        if gipp is not None and not gipp.is_file():
            raise Sen2CorError(f"Sen2Cor gipp_path {self.gipp_path}: no such file (an L2A_GIPP.xml)")
        return cci, gipp


def _tail(log_path: Path) -> str:
    try:
        text = log_path.read_bytes()[-_LOG_TAIL_CHARS:].decode(errors="replace").strip()
    except OSError:
        return "(no output)"
    return text or "(no output)"
