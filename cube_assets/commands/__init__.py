"""Sub-commands of ``cube-assets``: each module defines ``register(subparsers)``."""
