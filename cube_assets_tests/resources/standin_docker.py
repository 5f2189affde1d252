"""A stand-in for the ``docker`` command line, for testing the Sen2Cor resource where no Docker
engine runs. The fixture ``standin_docker`` (``conftest.py``) copies this file to
``<tmp>/bin/docker`` with a shebang for the test interpreter and puts that folder first on PATH.

It understands what the resource sends:

* ``docker run --rm --name N [--user U] --volume host:container:mode … IMAGE PRODUCT.SAFE`` —
  appends ``{"command": "run", "args": [...], "pid": <pid>}`` to ``$STANDIN_DOCKER_LOG`` and,
  per ``$STANDIN_DOCKER_MODE``:

  * ``ok`` (default): writes a small valid Level-2A product of the mounted L1C (same spacecraft,
    tile, sensing time and UTM grid origin; 60 × 60 px at 10 m, every L2A band and SCL, made by
    the scene simulator) into the ``/mnt/output-dir`` mount, as Sen2Cor would;
  * ``no-scl``: the same product without its SCL files (an incomplete product);
  * ``nothing``: exits 0 without writing anything;
  * ``fail``: prints a Sen2Cor-like error and exits 1;
  * ``hang``: records its pid in ``$STANDIN_DOCKER_STATE/<name>.pid`` and sleeps until stopped.

  Images listed in ``$STANDIN_DOCKER_MISSING_IMAGES`` (comma separated) fail as Docker does
  for an image it cannot pull (exit status 125) whatever the mode.
* ``docker stop [--time T] N`` / ``docker kill N`` — logged; ends the hanging ``run`` of
  container ``N`` (SIGTERM / SIGKILL), or fails like Docker for an unknown container.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def _log(entry: dict) -> None:
    with open(os.environ["STANDIN_DOCKER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _run(args: list[str]) -> int:
    options: dict[str, list[str]] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in ("--name", "--volume", "--user"):
            options.setdefault(args[i], []).append(args[i + 1])
            i += 2
        elif args[i].startswith("--"):
            options.setdefault(args[i], [])
            i += 1
        else:
            rest.append(args[i])
            i += 1
    image, product = rest
    name = options["--name"][0]
    mounts = {}
    for volume in options.get("--volume", []):
        host, container, _mode = volume.split(":")
        mounts[container] = Path(host)
    missing = [m for m in os.environ.get("STANDIN_DOCKER_MISSING_IMAGES", "").split(",") if m]
    if image in missing:
        print(f"Unable to find image '{image}' locally", file=sys.stderr)
        print(f"docker: Error response from daemon: pull access denied for {image.split(':')[0]}", file=sys.stderr)
        return 125
    mode = os.environ.get("STANDIN_DOCKER_MODE", "ok")
    print(f"Sen2Cor stand-in ({image}) processing {product}")
    if mode == "fail":
        print(f"L2A_Process: ERROR: cannot process {product} (stand-in failure)", file=sys.stderr)
        return 1
    if mode == "hang":
        state = Path(os.environ["STANDIN_DOCKER_STATE"])
        state.mkdir(parents=True, exist_ok=True)
        (state / f"{name}.pid").write_text(str(os.getpid()))
        sys.stdout.flush()
        time.sleep(600)
        return 0
    if mode == "nothing":
        return 0
    _write_l2a(mounts["/mnt/input-dir"] / product, mounts["/mnt/output-dir"], without_scl=mode == "no-scl")
    print("Sen2Cor stand-in: done")
    return 0


def _write_l2a(l1c: Path, output_dir: Path, without_scl: bool) -> None:
    from cube_assets.formats.sen2cor import L2A_BANDS
    from cube_assets.formats.sentinel2_safe import parse_product_metadata, parse_tile_metadata
    from cube_assets.formats.simulator import simulate_l2a_product

    metadata = parse_product_metadata(l1c)
    tile = parse_tile_metadata(l1c)
    ulx, uly = tile.origins[10]
    product = simulate_l2a_product(
        output_dir,
        tile_id=metadata.tile_id,
        epsg=tile.epsg,
        ulx=ulx,
        uly=uly,
        size_px=60,
        sensing_time=metadata.sensing_time,
        seed=7,
        bands=L2A_BANDS,
        cloud_fraction=0.3,
        swath_edge=False,
        spacecraft=metadata.spacecraft,
        relative_orbit=metadata.relative_orbit or 1,
    )
    if without_scl:
        for scl in product.rglob("*_SCL_*.jp2"):
            scl.unlink()


def _stop(args: list[str], sig: int) -> int:
    name = args[-1]
    pid_file = Path(os.environ["STANDIN_DOCKER_STATE"]) / f"{name}.pid"
    if not pid_file.is_file():
        print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
        return 1
    try:
        os.kill(int(pid_file.read_text()), sig)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    print(name)
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    _log({"command": command, "args": args, "pid": os.getpid()})
    if command == "run":
        return _run(args)
    if command == "stop":
        return _stop(args, signal.SIGTERM)
    if command == "kill":
        return _stop(args, signal.SIGKILL)
    print(f"stand-in docker: unsupported command {command!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
