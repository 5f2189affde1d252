"""Hostile input and loaded-machine tests: each refusal is clean, names the input, and leaves nothing written or leaked."""
