"""The one rule for text from outside that becomes a file or folder name, and for relative paths made of such names.

Scene ids, STAC Item ids and asset keys, band and collection names, archive members and
object-store key components all end up as names on disk (or in a key). A name is accepted
only when it is 1 to :data:`MAX_NAME_BYTES` bytes of ASCII letters, digits, ``.``, ``_``,
``+`` and ``-`` and starts with a letter or a digit. That leaves out, by construction: ``/``
and ``\\`` (no path inside a name), ``.`` and ``..``, hidden names (the store's temporary and
lock files start with a dot), drive letters (``:``), NUL and every other control character,
spaces and non-ASCII text, and the empty name. No product format this project reads needs
anything else (the Sentinel-2 ``.SAFE`` and Landsat Collection 2 file names all fit).

A relative path (an archive member, a band file in a manifest) is a ``/``-separated sequence
of at most :data:`MAX_PATH_PARTS` such names, :data:`MAX_PATH_BYTES` bytes in all (one trailing
``/`` marks a folder); a leading ``/``, a drive letter, a ``\\`` or a ``..`` is named as such in
the message, and empty or ``.`` components are refused like any other bad name.
"""

from __future__ import annotations

import re

from cube_assets.errors import CubeAssetsError, ProviderError
from cube_assets.quoting import quoted

#: The longest name in bytes most filesystems accept (ext4, XFS, APFS, NTFS in UTF-16 units).
MAX_NAME_BYTES = 255
#: The longest relative path accepted, in bytes, and the deepest.
MAX_PATH_BYTES = 1024
MAX_PATH_PARTS = 16

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a file or folder name (the module's rule).

    Returns:
        ``None`` for an acceptable name, else a short reason.
    """
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    if value in (".", ".."):
        return "is a relative folder reference"
    if not _NAME.fullmatch(value):
        return "must be letters, digits, '.', '_', '+', '-' only, starting with a letter or digit"
    return None


def check_name(value: object, what: str, error: type[CubeAssetsError] = ProviderError) -> str:
    """Check ``value`` against the name rule (module docstring).

    ``what`` says where the value comes from (``"stac-x: Item id"``); it starts the message.

    Returns:
        ``value``, unchanged.

    Raises:
        error: naming ``what``, quoting the value (at most ~200 characters) and the reason.
    """
    problem = name_problem(value)
    if problem is not None:
        raise error(f"{what} {quoted(value)} cannot be a file or folder name: it {problem}")
    return value  # type: ignore[return-value]  # checked to be a name just above


def relative_path_problem(value: object, container: str = "its folder") -> str | None:
    """What is wrong with ``value`` as a relative path of names (module docstring).

    ``container`` names what the path must stay in, for the ``..`` message.

    Returns:
        ``None`` for an acceptable path, else a reason (``"has an absolute path"``,
        ``"climbs out of its folder with '..'"``, or the reason of the first bad component).
    """
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    normalized = value.replace("\\", "/")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        return "has an absolute path"
    parts = normalized.removesuffix("/").split("/")
    if ".." in parts:
        return f"climbs out of {container} with '..'"
    if "\\" in value:
        return "uses '\\' as a separator"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if len(parts) > MAX_PATH_PARTS:
        return f"is deeper than {MAX_PATH_PARTS} folders"
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            return f"has a component {quoted(part, 60)} that {problem}"
    return None


def relative_parts(value: str) -> tuple[str, ...]:
    """The components of a relative path already accepted by :func:`relative_path_problem`.

    A trailing ``/`` (a folder member of an archive) is dropped.

    Returns:
        The names, in order.
    """
    return tuple(value.removesuffix("/").split("/"))
