"""Test instrumentation imported by one worker (``-i cube_assets_tests.scale_out.merge_pause``): it stops in a merge.

When ``CUBE_ASSETS_TEST_MERGE_PAUSE`` names a file, the first ``tile_merge`` step this worker
runs merges its first date for real (its COGs are published under their final keys), then
writes that file (the process id and the date, as JSON) and sleeps until the process is killed.
The test waits for the file and ``kill -9``'s the worker there: in the middle of a merge step,
with part of its outputs written, deterministically (a kill timed by polling would race a
step that lasts a second at the tests' size). Nothing else of the worker is changed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import cube_assets.steps.merge as merge_steps

PAUSE_VARIABLE = "CUBE_ASSETS_TEST_MERGE_PAUSE"
_real_merge_date = merge_steps.merge_date


def _merge_date_then_pause(*args: Any, **kwargs: Any) -> Any:
    merge = _real_merge_date(*args, **kwargs)
    marker = Path(os.environ[PAUSE_VARIABLE])
    if not marker.exists():
        marker.write_text(json.dumps({"pid": os.getpid(), "date": merge.date.isoformat()}))
        while True:  # until kill -9
            time.sleep(1)
    return merge


if os.environ.get(PAUSE_VARIABLE):
    # Before cube_assets.assets.merge imports it: the worker imports this module at start.
    merge_steps.merge_date = _merge_date_then_pause
