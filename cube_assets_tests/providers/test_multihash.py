"""Multihashes of the STAC file extension: computing, parsing, refusing malformed ones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cube_assets.errors import ProviderError
from cube_assets.providers.multihash import file_multihash, parse_multihash
from cube_assets_tests.fixtures_stac import real_landsat_items


def test_sha2_256_multihash_of_a_file_is_code_length_digest(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"cube")
    assert file_multihash(path) == "1220" + hashlib.sha256(b"cube").hexdigest()


def test_real_usgs_checksums_parse_as_sha2_512(real_data: Path) -> None:
    item = real_landsat_items(real_data)[0]
    parsed = parse_multihash(item["assets"]["red"]["file:checksum"])
    assert (parsed.algorithm, parsed.code, len(parsed.digest)) == ("sha2-512", 0x13, 64)


def test_multihash_with_a_digest_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ProviderError, match="declares a 32-byte digest but holds 2"):
        parse_multihash("1220abcd")


def test_keccak_multihash_is_recognized_as_unsupported() -> None:
    parsed = parse_multihash("1b20" + "00" * 32)  # keccak-256: well formed, not computable here
    assert not parsed.supported and parsed.algorithm is None
