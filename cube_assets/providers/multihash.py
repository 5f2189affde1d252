"""Multihashes, as in the STAC file extension's ``file:checksum``: parsing, verifying, computing.

A multihash is ``varint(code) varint(length) digest``, written as hex text (``1220…`` is
SHA2-256). :func:`parse_multihash` reads one and checks its digest length,
:meth:`Multihash.new_hasher` and :meth:`Multihash.matches` verify bytes against it, and
:func:`file_multihash` computes one for a file. The algorithms are hashlib's (SHA-1, SHA-2,
SHA-3, MD5, BLAKE2) and BLAKE3 from the ``blake3`` package, whose digests may have any length.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cube_assets.errors import ProviderError

#: Bytes read at a time when a file is hashed.
CHUNK_SIZE = 1 << 20


def _blake3() -> Any:
    from blake3 import blake3

    return blake3()


#: Multihash codes this module can verify, with their name and hasher constructor (hashlib's,
#: or the ``blake3`` package's, whose objects have the same ``update``/``digest`` interface).
_MULTIHASH_ALGORITHMS: dict[int, tuple[str, Callable[[], Any]]] = {
    0x11: ("sha1", hashlib.sha1),
    0x12: ("sha2-256", hashlib.sha256),
    0x13: ("sha2-512", hashlib.sha512),
    0x14: ("sha3-512", hashlib.sha3_512),
    0x15: ("sha3-384", hashlib.sha3_384),
    0x16: ("sha3-256", hashlib.sha3_256),
    0x17: ("sha3-224", hashlib.sha3_224),
    0xD5: ("md5", hashlib.md5),
    0xB220: ("blake2b-256", lambda: hashlib.blake2b(digest_size=32)),
    0xB240: ("blake2b-512", lambda: hashlib.blake2b(digest_size=64)),
    0xB260: ("blake2s-256", lambda: hashlib.blake2s(digest_size=32)),
    0x1E: ("blake3", _blake3),
}
#: Algorithms with an extendable output: a multihash may hold a digest of any length (BLAKE3's
#: default, and what a length-less ``digest()`` gives, is 32 bytes).
_EXTENDABLE_OUTPUT = frozenset({0x1E})

SHA2_256 = 0x12
BLAKE3 = 0x1E


def _finish(hasher: Any, code: int, length: int | None = None) -> bytes:
    """The digest of ``hasher``, ``length`` bytes long for an extendable-output algorithm."""
    if code in _EXTENDABLE_OUTPUT and length is not None:
        return hasher.digest(length=length)
    return hasher.digest()


def _read_varint(data: bytes, position: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ProviderError(f"{where}: multihash ends inside a varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ProviderError(f"{where}: multihash varint is too long")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True)
class Multihash:
    """A parsed multihash: the algorithm code, its name (``None`` if unsupported) and the digest."""

    code: int
    digest: bytes
    algorithm: str | None

    @property
    def supported(self) -> bool:
        """Whether this module can compute the algorithm."""
        return self.code in _MULTIHASH_ALGORITHMS

    def new_hasher(self) -> Any:
        """Return a fresh hasher (hashlib or ``blake3``) for the algorithm.

        Raises:
            ProviderError: if the algorithm is not supported.
        """
        if not self.supported:
            raise ProviderError(f"multihash code 0x{self.code:x} is not supported")
        return _MULTIHASH_ALGORITHMS[self.code][1]()

    def matches(self, hasher: Any) -> bool:
        """Whether ``hasher`` (from :meth:`new_hasher`, fed the file's bytes) gives this digest."""
        return _finish(hasher, self.code, len(self.digest)) == self.digest

    def hex(self) -> str:
        """The multihash as hex text, as in ``file:checksum``."""
        return (_varint(self.code) + _varint(len(self.digest)) + self.digest).hex()


def parse_multihash(text: str, where: str = "file:checksum") -> Multihash:
    """Parse a hex-encoded multihash (``1220…`` is SHA2-256).

    Returns:
        The :class:`Multihash`; ``algorithm`` is ``None`` for a well-formed multihash whose
        algorithm this module cannot compute (e.g. Keccak). BLAKE3 (code ``0x1e``) digests
        may have any length.

    Raises:
        ProviderError: naming ``where``, if the text is not hex or the multihash is malformed
            (digest length different from the declared one, or from the algorithm's).
    """
    try:
        data = bytes.fromhex(str(text))
    except ValueError:
        raise ProviderError(f"{where}: {text!r} is not a hex-encoded multihash") from None
    code, position = _read_varint(data, 0, where)
    length, position = _read_varint(data, position, where)
    digest = data[position:]
    if len(digest) != length:
        raise ProviderError(f"{where}: multihash declares a {length}-byte digest but holds {len(digest)} bytes")
    algorithm = _MULTIHASH_ALGORITHMS.get(code)
    if code in _EXTENDABLE_OUTPUT and length == 0:
        raise ProviderError(f"{where}: {algorithm[0] if algorithm else 'multihash'} digest is empty")
    if algorithm is not None and code not in _EXTENDABLE_OUTPUT and algorithm[1]().digest_size != length:
        raise ProviderError(f"{where}: {algorithm[0]} digests are {algorithm[1]().digest_size} bytes, not {length}")
    return Multihash(code=code, digest=digest, algorithm=algorithm[0] if algorithm else None)


def file_multihash(path: str | os.PathLike[str], code: int = SHA2_256, length: int | None = None) -> str:
    """Return the hex multihash of the file at ``path`` with algorithm ``code`` (default SHA2-256).

    ``length`` is the digest length in bytes of an extendable-output algorithm (BLAKE3;
    default 32); other algorithms have one length and ignore it.

    Raises:
        ProviderError: if the algorithm is not supported.
        OSError: if the file cannot be read.
    """
    if code not in _MULTIHASH_ALGORITHMS:
        raise ProviderError(f"multihash code 0x{code:x} is not supported")
    hasher = _MULTIHASH_ALGORITHMS[code][1]()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return Multihash(code=code, digest=_finish(hasher, code, length), algorithm=_MULTIHASH_ALGORITHMS[code][0]).hex()
