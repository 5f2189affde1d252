"""Per-partition work of each stage: pure code (no dagster) that the assets call."""
