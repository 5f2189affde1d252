"""Cleaning up after killed writers: stale staging folders on the disk, abandoned multipart uploads in S3.

Staging folders are real folders whose modification times are set back; multipart uploads are
started (a part sent, never completed) on moto's S3 server over HTTP, and their age is judged
against a ``now`` in the future rather than by waiting.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.cleanup import clean_stale_writes, remove_stale_staging
from cube_assets.storage.s3_store import MIN_MULTIPART_CHUNKSIZE
from cube_assets_tests.fixtures_s3 import S3Server

DAY = 24 * 3600


def _age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything under it to ``seconds`` ago."""
    when = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (when, when), follow_symlinks=False)


def _staging_with_leftovers(staging: Path) -> None:
    (staging / "killed-writer" / "sub").mkdir(parents=True)
    (staging / "killed-writer" / "sub" / "merge_B04.tif").write_bytes(b"partial")
    (staging / "running-writer").mkdir()
    (staging / "running-writer" / "blend_B04.tif").write_bytes(b"being written")
    (staging / "stray.tmp").write_bytes(b"x")
    _age(staging / "killed-writer", 2 * DAY)
    _age(staging / "stray.tmp", 2 * DAY)
    _age(staging / "running-writer", 2 * DAY)
    os.utime(staging / "running-writer" / "blend_B04.tif")  # its writer is still growing this file


def test_stale_staging_entries_go_and_entries_with_recent_writes_stay(tmp_path: Path) -> None:
    staging = tmp_path / ".staging"
    _staging_with_leftovers(staging)

    removed = remove_stale_staging(staging, timedelta(hours=24))

    assert removed == [staging / "killed-writer", staging / "stray.tmp"]
    assert sorted(p.name for p in staging.iterdir()) == ["running-writer"]
    assert (staging / "running-writer" / "blend_B04.tif").read_bytes() == b"being written"
    assert remove_stale_staging(tmp_path / "missing", timedelta(hours=1)) == []
    with pytest.raises(ValueError, match="must not be negative"):
        remove_stale_staging(staging, timedelta(hours=-1))


def test_opening_the_local_store_removes_stale_staging_unless_disabled(tmp_path: Path) -> None:
    _staging_with_leftovers(tmp_path / "kept" / ".staging")
    RasterStoreResource(root=str(tmp_path / "kept"), stale_after_hours=0).get_store()
    assert sorted(p.name for p in (tmp_path / "kept" / ".staging").iterdir()) == [
        "killed-writer",
        "running-writer",
        "stray.tmp",
    ]

    _staging_with_leftovers(tmp_path / "data" / ".staging")
    RasterStoreResource(root=str(tmp_path / "data")).get_store()
    assert sorted(p.name for p in (tmp_path / "data" / ".staging").iterdir()) == ["running-writer"]

    _age(tmp_path / "data" / ".staging" / "running-writer", 2 * DAY)
    RasterStoreResource(root=str(tmp_path / "data"), stale_after_hours=72).get_store()
    assert (tmp_path / "data" / ".staging" / "running-writer").is_dir(), "younger than stale_after_hours"


def test_opening_the_store_walks_it_for_temporary_files_at_most_once_an_hour(tmp_path: Path) -> None:
    root = tmp_path / "data"
    first = root / "cube" / "scenes" / ".S2A_B04.0123456789ab.tmp.tif"
    first.parent.mkdir(parents=True)
    first.write_bytes(b"killed")
    _age(first, 2 * DAY)
    RasterStoreResource(root=str(root)).get_store()
    assert not first.exists()

    # A second step opening the store within the hour does not walk it again...
    second = root / "cube" / "scenes" / ".S2A_B08.0123456789ab.tmp.tif"
    second.write_bytes(b"killed")
    _age(second, 2 * DAY)
    RasterStoreResource(root=str(root)).get_store()
    assert second.exists()

    # ...one opening it after the hour does.
    _age(root / ".temporaries-swept", 2 * 3600)
    RasterStoreResource(root=str(root)).get_store()
    assert not second.exists()


def _abandoned_upload(s3_server: S3Server, bucket: str, key: str) -> str:
    """Start a multipart upload of ``key`` and send one part, as a writer killed mid-upload leaves it."""
    client = s3_server.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"\0" * MIN_MULTIPART_CHUNKSIZE)
    return upload


def test_abandoned_multipart_uploads_under_the_prefix_are_aborted_once_old_enough(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = s3_server.store(s3_bucket, prefix="cubes")
    _abandoned_upload(s3_server, s3_bucket, "cubes/small/000000/2024-01-09/small_000000_20240109_B04.tif")
    _abandoned_upload(s3_server, s3_bucket, "cubes/small/000000/2024-01-01/small_000000_20240101_LCF_B04.tif")
    _abandoned_upload(s3_server, s3_bucket, "other-project/big.tif")
    now = datetime.now(UTC)

    # Parts sent just now: the uploads may still be running (moto reports 2010 as every upload's start,
    # so the age comes from the parts here).
    assert store.abort_stale_multipart_uploads(timedelta(hours=24), now=now) == []
    assert len(s3_server.incomplete_uploads(s3_bucket)) == 3

    aborted = store.abort_stale_multipart_uploads(timedelta(hours=24), now=now + timedelta(hours=25))

    assert aborted == [
        "cubes/small/000000/2024-01-01/small_000000_20240101_LCF_B04.tif",
        "cubes/small/000000/2024-01-09/small_000000_20240109_B04.tif",
    ]
    assert s3_server.incomplete_uploads(s3_bucket) == ["other-project/big.tif"], "outside the prefix: not ours"
    assert s3_server.object_keys(s3_bucket) == [], "aborting never makes an object appear"


def test_clean_stale_writes_on_s3_cleans_its_staging_root_and_its_uploads(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(s3_bucket, prefix="cubes", staging_root=tmp_path / ".staging")
    _staging_with_leftovers(tmp_path / ".staging")
    _abandoned_upload(s3_server, s3_bucket, "cubes/small/x.tif")

    report = clean_stale_writes(store, timedelta(hours=24), now=datetime.now(UTC) + timedelta(hours=1))

    assert report.staging_removed == (tmp_path / ".staging" / "killed-writer", tmp_path / ".staging" / "stray.tmp")
    assert report.uploads_aborted == ()  # started an hour before "now": not stale yet
    report = clean_stale_writes(store, timedelta(hours=24), now=datetime.now(UTC) + timedelta(days=2))
    assert report.uploads_aborted == ("cubes/small/x.tif",)
    assert s3_server.incomplete_uploads(s3_bucket) == []


def test_a_failing_cleanup_is_logged_and_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class RefusingStore:
        staging_root = tmp_path / ".staging"

        def abort_stale_multipart_uploads(self, older_than: timedelta, now: datetime) -> list[str]:
            raise OSError("AccessDenied: s3:ListBucketMultipartUploads")

    report = clean_stale_writes(RefusingStore())

    assert report.uploads_aborted == ()
    assert "AccessDenied" in caplog.text
