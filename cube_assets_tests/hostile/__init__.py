"""Hostile input and loaded-machine tests.

Each refusal is clean, names the input, and leaves nothing written or leaked.
"""
