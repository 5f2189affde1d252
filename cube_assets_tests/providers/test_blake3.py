"""BLAKE3 ``file:checksum`` multihashes (code 0x1e): verified, and a mismatch falls through like SHA2-256.

The expected multihashes are computed here with the ``blake3`` package over the real rasters
the loopback STAC server serves.
"""

from __future__ import annotations

from datetime import UTC, datetime

import blake3
import pytest
from shapely.geometry import box

from cube_assets.errors import ProviderError
from cube_assets.providers.base import SENTINEL2_L2A
from cube_assets.providers.chain import search_and_fetch
from cube_assets.providers.http import DownloadError, HttpClient, RemoteFile
from cube_assets.providers.multihash import BLAKE3, file_multihash, parse_multihash
from cube_assets.providers.raw_store import CorruptFile, RawStore, verify_file
from cube_assets.providers.retry import RetryPolicy
from cube_assets.providers.stac import build_stac_provider
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, real_sentinel2_items

B04 = REAL_S2_ASSET_FILES["B04"]
TILE = box(27.4, -7.8, 27.5, -7.7)
WINDOW = (datetime(2020, 6, 20, tzinfo=UTC), datetime(2020, 6, 22, tzinfo=UTC))  # one scene: 2020-06-21


def blake3_multihash(data: bytes, length: int = 32) -> str:
    """``1e`` + varint length + the BLAKE3 digest, as the STAC file extension writes it."""
    return "1e" + bytes([length]).hex() + blake3.blake3(data).digest(length=length).hex()


@pytest.fixture
def client():
    with HttpClient("mirror", retry=RetryPolicy(attempts=2, backoff_s=0), sleep=lambda _: None) as http:
        yield http


def test_blake3_multihash_of_a_real_file_is_what_the_blake3_package_computes(real_data) -> None:
    data = (real_data / B04).read_bytes()
    assert file_multihash(real_data / B04, BLAKE3) == blake3_multihash(data)
    assert file_multihash(real_data / B04, BLAKE3, 64) == blake3_multihash(data, 64)
    parsed = parse_multihash(blake3_multihash(data))
    assert (parsed.algorithm, parsed.code, parsed.supported) == ("blake3", 0x1E, True)


def test_empty_blake3_digest_is_refused() -> None:
    with pytest.raises(ProviderError, match="blake3 digest is empty"):
        parse_multihash("1e00")


@pytest.mark.parametrize("length", [32, 64], ids=["default-32-bytes", "extended-64-bytes"])
def test_download_verifies_a_blake3_checksum(stac_server, real_data, client, tmp_path, length) -> None:
    data = (real_data / B04).read_bytes()
    url = stac_server.serve_file(real_data / B04, B04)

    result = client.download(RemoteFile(url, len(data), blake3_multihash(data, length)), tmp_path / "B04.jp2")

    assert (tmp_path / "B04.jp2").read_bytes() == data and result.attempts == 1


def test_wrong_blake3_checksum_never_produces_the_file(stac_server, real_data, client, tmp_path) -> None:
    data = (real_data / B04).read_bytes()
    url = stac_server.serve_file(real_data / B04, B04)

    with pytest.raises(DownloadError, match=r"checksum mismatch \(blake3\)"):
        client.download(RemoteFile(url, len(data), blake3_multihash(data[:-1])), tmp_path / "B04.jp2")

    assert list(tmp_path.iterdir()) == []
    assert len(stac_server.requests_to(url)) == 2  # a mismatch is retried like any transient failure


def test_corrupt_bytes_fail_the_blake3_check_and_are_fetched_again(stac_server, real_data, client, tmp_path) -> None:
    data = (real_data / B04).read_bytes()
    url = stac_server.serve_file(real_data / B04, B04)
    stac_server.fail(url, mode="corrupt", times=1)

    result = client.download(RemoteFile(url, len(data), blake3_multihash(data)), tmp_path / "B04.jp2")

    assert result.attempts == 2 and (tmp_path / "B04.jp2").read_bytes() == data


def test_stored_file_with_a_wrong_blake3_checksum_is_corrupt(real_data) -> None:
    data = (real_data / B04).read_bytes()
    verify_file(real_data / B04, checksum=blake3_multihash(data, 48))
    with pytest.raises(CorruptFile, match="blake3 checksum mismatch"):
        verify_file(real_data / B04, checksum=blake3_multihash(data + b"\0"))


def test_wrong_blake3_checksum_falls_through_to_the_next_provider(stac_server, real_data, tmp_path) -> None:
    data = (real_data / B04).read_bytes()
    providers = []
    for name in ("primary", "mirror"):
        items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES, prefix=f"{name}/")
        for item in items:
            # The primary announces a BLAKE3 digest its bytes do not have; the mirror the right one.
            item["assets"]["B04"]["file:checksum"] = blake3_multihash(data if name == "mirror" else data[::-1])
        api = stac_server.add_api(name, items)
        providers.append(build_stac_provider(name, {"url": api.url, "retries": 1, "backoff_s": 0}, {}))

    [fetched] = search_and_fetch(
        providers, SENTINEL2_L2A, TILE, *WINDOW, tmp_path / "unused", store=RawStore(tmp_path / "raw"), bands=["B04"]
    )

    assert fetched.provider == "mirror"
    assert (
        len(fetched.failures) == 1
        and "primary: " in fetched.failures[0]
        and "checksum mismatch (blake3)" in fetched.failures[0]
    )
    assert len(stac_server.requests_to(f"/files/primary/{B04}")) == 2
    assert fetched.bands["B04"].read_bytes() == data
    stored = RawStore(tmp_path / "raw", verify_checksums=True).load(fetched.scene, ["B04"], offline=True)
    assert stored.properties["B04"]["checksum"] == blake3_multihash(data)  # kept, and verified again on load
