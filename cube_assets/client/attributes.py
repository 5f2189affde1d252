"""What a catalog object's attributes are: :class:`Attribute` declarations, and the :class:`File` of an image band.

An :class:`Attribute` names its coercer (:mod:`cube_assets.client.coercers`), its search kind
and column, and whether it is read-only, immutable once saved, nullable or has a default; the
object (:class:`~cube_assets.client.base.CatalogObject`) stores the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Coerce = Callable[[str, Any], Any]
"""``coerce(what, value) -> value``: checks and normalizes an assigned value; raises CatalogError."""


class Attribute:
    """A declared attribute of a catalog object: how values are checked and how it maps to a column.

    ``kind`` is the search kind (see :data:`cube_assets.catalog.expressions.FIELD_KINDS`) or None
    when the attribute is not searchable; ``column`` the model attribute (default: same name).
    """

    def __init__(
        self,
        coerce: Coerce,
        *,
        kind: str | None = None,
        column: str | None = None,
        readonly: bool = False,
        immutable: bool = False,
        default: Callable[[], Any] | None = None,
        nullable: bool = True,
        doc: str = "",
    ) -> None:
        self.coerce = coerce
        self.kind = kind
        self.column = column
        self.readonly = readonly
        self.immutable = immutable
        self.default = default
        self.nullable = nullable
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.column is None:
            self.column = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._values.get(self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj._assign(self, value)

    def initial(self) -> Any:
        """The value of a new object that was not given one."""
        return self.default() if self.default is not None else None


class Alias:
    """Another name of a declared attribute, such as the catalog guide's ``cs_code`` for ``crs``.

    Reading it reads the target through ``read`` (default: unchanged); assigning it assigns the
    target through ``write``. ``searchable`` aliases (same values as the target) may also be
    used in search expressions.
    """

    def __init__(
        self,
        target: str,
        *,
        read: Callable[[Any], Any] | None = None,
        write: Callable[[Any], Any] | None = None,
        doc: str = "",
    ) -> None:
        self.target = target
        self.read = read
        self.write = write
        self.searchable = read is None and write is None
        self.__doc__ = doc or f"Another name of ``{target}``."
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj._values.get(self.target)
        return self.read(value) if self.read is not None and value is not None else value

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, self.write(value) if self.write is not None and value is not None else value)


@dataclass(frozen=True)
class File:
    """The file holding one band of an image: a local path or URI, and its size in bytes if known."""

    href: str
    size_bytes: int | None = None


__all__ = ["Alias", "Attribute", "Coerce", "File"]
