"""Sen2Cor in Docker, the pure part: image references, the ``docker run`` command, finding and
validating the Level-2A product a run produced.

Running the container (subprocess, timeout, stopping it) is the job of
:class:`cube_assets.resources.sen2cor.Sen2CorResource`; nothing here starts a process.

The image contract is that of the Brazil Data Cube images (``brazildatacube/sen2cor:<version>``,
built from github.com/brazil-data-cube/sen2cor-docker): the entry point takes the name of an
L1C ``.SAFE`` folder as its only argument, reads it from :data:`CONTAINER_INPUT_DIR`, writes the
L2A product into :data:`CONTAINER_OUTPUT_DIR`, finds the ESA CCI land-cover files
(``CCI4SEN2COR``) in :data:`CONTAINER_CCI_DIR` and its configuration at
``/opt/sen2cor/<version>/cfg/L2A_GIPP.xml`` (:func:`container_gipp_path`).

Sen2Cor names its output like the input with ``MSIL1C`` replaced by ``MSIL2A``, but with its
own processing baseline (``N9999`` for 2.8 and later) and processing time, so the product is
found by spacecraft, sensing time and tile (:func:`find_l2a_product`), never by exact name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from cube_assets.errors import CubeAssetsError, InvalidScene
from cube_assets.formats.sentinel2_safe import (
    BAND_NAMES,
    ProductMetadata,
    SafeProduct,
    normalize_band_name,
    open_safe,
)

DEFAULT_IMAGE = "brazildatacube/sen2cor"
#: Versions tried in this order when the image reference has no tag.
DEFAULT_VERSIONS: tuple[str, ...] = ("2.11.0", "2.10.0", "2.8.0", "2.5.5")
#: Seconds after which a run is stopped (90 minutes: a whole tile takes 20–60 minutes).
DEFAULT_TIMEOUT_SECONDS = 5400
#: The Dagster concurrency pool that limits simultaneous Sen2Cor runs.
SEN2COR_POOL = "sen2cor"

CONTAINER_INPUT_DIR = "/mnt/input-dir"
CONTAINER_OUTPUT_DIR = "/mnt/output-dir"
CONTAINER_CCI_DIR = "/mnt/aux_data"
_CONTAINER_GIPP = "/opt/sen2cor/{version}/cfg/L2A_GIPP.xml"

#: Spectral bands of a Level-2A product (B10, the cirrus band, is not corrected).
L2A_BANDS: tuple[str, ...] = tuple(b for b in BAND_NAMES if b != "B10")
L2A_QUALITY_BAND = "SCL"

_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?$")
_CONTAINER_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_L1C_NAME = re.compile(r"^(?P<spacecraft>S2[A-D])_MSIL1C_(?P<sensing>\d{8}T\d{6})_")


class Sen2CorError(CubeAssetsError):
    """Sen2Cor could not turn a Level-1C product into a valid Level-2A product."""


class Sen2CorTimeout(Sen2CorError):
    """A Sen2Cor container ran longer than its timeout and was stopped."""


@dataclass(frozen=True)
class Sen2CorAttempt:
    """One image to try: the Sen2Cor ``version`` it holds and the full image ``reference``."""

    version: str
    reference: str


@dataclass(frozen=True)
class Sen2CorOutput:
    """What a Sen2Cor run (or an earlier one, ``reused``) produced for one L1C product."""

    l1c_product_id: str
    path: Path
    product_id: str
    version: str | None
    image: str | None
    reused: bool

    def as_json(self) -> dict[str, object]:
        """A JSON-able summary for manifests: product id, path, version, image, reused."""
        return {
            "l1c_product_id": self.l1c_product_id,
            "l2a_product_id": self.product_id,
            "l2a_path": str(self.path),
            "version": self.version,
            "image": self.image,
            "reused": self.reused,
        }


# --------------------------------------------------------------------------------------------
# Images and tags


def image_has_tag(image: str) -> bool:
    """Whether an image reference already names a tag or a digest.

    Only the last path component can hold a tag: ``registry:5000/sen2cor`` has none (the colon
    belongs to the registry's port), ``brazildatacube/sen2cor:2.11.0`` and
    ``sen2cor@sha256:…`` have one.

    Returns:
        ``True`` if a tag or digest is present.
    """
    if "@" in image:
        return True
    return ":" in image.rsplit("/", 1)[-1]


def image_reference(image: str, version: str) -> str:
    """The reference of ``image`` for Sen2Cor ``version``: ``image:version``, or ``image`` itself
    when it already has a tag or digest (a tag is never appended twice).

    Returns:
        The image reference to pass to ``docker run``.

    Raises:
        Sen2CorError: if ``image`` is empty or contains whitespace.
    """
    _check_image(image)
    return image if image_has_tag(image) else f"{image}:{version}"


def attempts(image: str, versions: Sequence[str]) -> list[Sen2CorAttempt]:
    """The images to try, in order.

    Without a tag, one attempt per configured version (``image:2.11.0``, ``image:2.10.0``…).
    With a tag or digest the reference is used as given, once; its version (for the GIPP mount
    path) is the tag when the tag looks like a version (``2.10.0``), else the first configured
    version.

    Returns:
        The attempts, never empty.

    Raises:
        Sen2CorError: if ``image`` is malformed, ``versions`` is empty, repeats a version or
            holds one that is not like ``2.11.0``.
    """
    _check_image(image)
    versions = list(versions)
    if not versions:
        raise Sen2CorError(f"Sen2Cor image {image!r}: no versions configured")
    for version in versions:
        if not _VERSION.match(version):
            raise Sen2CorError(f"Sen2Cor version {version!r} is not of the form 2.11.0")
    if len(set(versions)) != len(versions):
        raise Sen2CorError(f"Sen2Cor versions repeat: {versions}")
    if image_has_tag(image):
        tag = image.rsplit("/", 1)[-1].split("@", 1)[0].partition(":")[2]
        return [Sen2CorAttempt(tag if _VERSION.match(tag) else versions[0], image)]
    return [Sen2CorAttempt(version, f"{image}:{version}") for version in versions]


def _check_image(image: str) -> None:
    if not image or any(c.isspace() for c in image):
        raise Sen2CorError(f"Sen2Cor image reference {image!r} is empty or contains whitespace")


def container_gipp_path(version: str) -> str:
    """Where the image expects ``L2A_GIPP.xml``: ``/opt/sen2cor/<version>/cfg/L2A_GIPP.xml``."""
    return _CONTAINER_GIPP.format(version=version)


# --------------------------------------------------------------------------------------------
# The docker command


def container_name(l1c_product_id: str, version: str, unique: str) -> str:
    """A container name for one run: ``sen2cor-<tile>-<sensing>-<version>-<unique>``.

    A product id that is not a standard L1C name is used whole (at most 60 characters) in place
    of tile and sensing time. Characters Docker does not accept in names become ``-``.

    Returns:
        The name passed to ``docker run --name`` and later to ``docker stop``.
    """
    match = _L1C_NAME.match(l1c_product_id)
    tile = re.search(r"_(T\d{2}[A-Z]{3})_", l1c_product_id)
    parts = ["sen2cor"]
    if tile and match:
        parts += [tile.group(1), match.group("sensing")]
    else:
        parts.append(l1c_product_id[:60])
    parts += [version, unique]
    return _CONTAINER_NAME_UNSAFE.sub("-", "-".join(parts))


def build_docker_command(
    *,
    docker: str,
    reference: str,
    version: str,
    l1c_path: Path,
    output_dir: Path,
    name: str,
    cci_dir: Path | None = None,
    gipp_path: Path | None = None,
    user: str | None = None,
) -> list[str]:
    """The ``docker run`` command that runs Sen2Cor on one L1C product.

    The L1C product's folder is mounted read-only as :data:`CONTAINER_INPUT_DIR` and its name
    is the container's argument; ``output_dir`` is mounted read-write as
    :data:`CONTAINER_OUTPUT_DIR`; ``cci_dir`` (the unpacked ``CCI4SEN2COR`` auxiliary data)
    read-only as :data:`CONTAINER_CCI_DIR`; ``gipp_path`` (an ``L2A_GIPP.xml``) read-only over
    the image's own. ``--rm`` removes the container when it ends; ``--name`` lets the caller
    stop it. Host paths must be absolute.

    Returns:
        The argument list (``docker`` first), for ``subprocess`` without a shell.

    Raises:
        Sen2CorError: if a host path is not absolute or contains ``:`` or ``,`` (which the
            ``--volume`` syntax cannot carry), or the L1C folder is not a ``.SAFE``.
    """
    if not l1c_path.name.endswith(".SAFE"):
        raise Sen2CorError(f"{l1c_path}: Sen2Cor needs a Level-1C .SAFE folder")
    mounts = [
        (l1c_path.parent, CONTAINER_INPUT_DIR, "ro"),
        (output_dir, CONTAINER_OUTPUT_DIR, "rw"),
    ]
    if cci_dir is not None:
        mounts.append((cci_dir, CONTAINER_CCI_DIR, "ro"))
    if gipp_path is not None:
        mounts.append((gipp_path, container_gipp_path(version), "ro"))
    command = [docker, "run", "--rm", "--name", name]
    if user:
        command += ["--user", user]
    for host, container, mode in mounts:
        command += ["--volume", f"{_host_path(host)}:{container}:{mode}"]
    command += [reference, l1c_path.name]
    return command


def _host_path(path: Path) -> str:
    text = str(path)
    if not path.is_absolute():
        raise Sen2CorError(f"{text}: Docker mounts need an absolute host path")
    if ":" in text or "," in text:
        raise Sen2CorError(f"{text}: a host path with ':' or ',' cannot be mounted with --volume")
    return text


# --------------------------------------------------------------------------------------------
# The produced product


def l2a_name_pattern(l1c: ProductMetadata) -> str:
    """A glob matching the names Sen2Cor gives the L2A product of ``l1c``.

    ``S2A_MSIL2A_20210908T042701_*_T46RER_*.SAFE`` for the L1C
    ``S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248``: same spacecraft,
    sensing time and tile, any baseline, orbit and processing time.

    Returns:
        The glob pattern.
    """
    match = _L1C_NAME.match(l1c.product_id)
    sensing = match.group("sensing") if match else f"{l1c.sensing_time:%Y%m%dT%H%M%S}"
    return f"{l1c.spacecraft}_MSIL2A_{sensing}_*_{l1c.tile_id}_*.SAFE"


def find_l2a_product(folder: Path, l1c: ProductMetadata) -> Path | None:
    """The L2A ``.SAFE`` of ``l1c`` directly inside ``folder`` (hidden folders are ignored).

    Returns:
        Its path, or ``None`` when there is none.

    Raises:
        Sen2CorError: if there are several (the newest cannot be told from names alone).
    """
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.glob(l2a_name_pattern(l1c)) if p.is_dir() and not p.name.startswith("."))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise Sen2CorError(f"{l1c.product_id}: several Level-2A products in {folder}: {names}")
    return found[0] if found else None


def validate_l2a_product(
    path: Path,
    l1c: ProductMetadata | None = None,
    *,
    expected_bands: Iterable[str] = L2A_BANDS,
) -> SafeProduct:
    """Check that ``path`` is a complete Level-2A product, of ``l1c`` when given.

    Checked: ``MTD_MSIL2A.xml`` exists and says Level-2A; tile and sensing time (to the second)
    match ``l1c``; every band of ``expected_bands`` and the scene classification ``SCL`` has a
    file; every band file opens as a georeferenced raster whose size is that of the tile grid
    at its resolution (``MTD_TL.xml``), so a truncated or empty JPEG 2000 is caught here.

    Returns:
        The opened product.

    Raises:
        InvalidScene: naming the product and the first problem found.
    """
    where = path.name
    if not (path / "MTD_MSIL2A.xml").is_file():
        raise InvalidScene(f"{where}: MTD_MSIL2A.xml missing (not a complete Level-2A product)")
    product = open_safe(path)
    metadata = product.metadata
    if metadata.product_type != "L2A":
        raise InvalidScene(f"{where}: product type is {metadata.product_type}, expected L2A")
    if l1c is not None:
        if metadata.tile_id != l1c.tile_id:
            raise InvalidScene(f"{where}: tile {metadata.tile_id} differs from the L1C's {l1c.tile_id}")
        if abs((metadata.sensing_time - l1c.sensing_time).total_seconds()) >= 1.0:
            raise InvalidScene(
                f"{where}: sensing time {metadata.sensing_time.isoformat()} differs from the L1C's "
                f"{l1c.sensing_time.isoformat()}"
            )
    wanted = [normalize_band_name(b) for b in expected_bands] + [L2A_QUALITY_BAND]
    missing = [band for band in wanted if not product.band_files.get(band)]
    if missing:
        raise InvalidScene(f"{where}: band(s) {', '.join(missing)} missing in the Level-2A product")
    sizes = product.tile_metadata.sizes
    for band, files in product.band_files.items():
        for resolution, file in files.items():
            _check_band_file(where, band, resolution, file, sizes.get(resolution))
    return product


def _check_band_file(where: str, band: str, resolution: int, file: Path, size: tuple[int, int] | None) -> None:
    try:
        with rasterio.open(file) as src:
            shape, crs = (src.height, src.width), src.crs
    except RasterioIOError as exc:
        raise InvalidScene(f"{where}: band {band} at {resolution} m ({file.name}) cannot be read: {exc}") from exc
    if crs is None:
        raise InvalidScene(f"{where}: band {band} at {resolution} m ({file.name}) has no CRS")
    if size is not None and shape != size:
        raise InvalidScene(
            f"{where}: band {band} at {resolution} m ({file.name}) is {shape[0]}×{shape[1]} px, "
            f"the tile grid is {size[0]}×{size[1]}"
        )
