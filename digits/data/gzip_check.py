"""Check a downloaded ``.gz`` as it arrives: hash it and decompress it in bounded memory.

A source is trusted only when its bytes hash to the catalog's SHA-256 (of the ``.gz`` as
published, or of its decompressed content), and that can be known only at the end. Until then
every IDX file of a catalogued dataset has a known decompressed size, so a source that sends
more than that (an endless stream, a small ``.gz`` of gigabytes of zeros) is stopped as soon as
it does: the compressed stream may not exceed ``gz_limit`` bytes, the decompressed one the
file's size, and decompression goes in slices of ``SLICE_BYTES``, however much a few
compressed bytes expand to.
"""

from __future__ import annotations

import hashlib
import zlib

from digits.data.catalog import RemoteFile

GZIP_MAGIC = b"\x1f\x8b"
SLICE_BYTES = 1 << 20  # the most decompressed data held at once


class TooLarge(Exception):
    """The source sent more than the file can be; stop reading it."""


def gz_limit(payload_bytes: int) -> int:
    """The most bytes a gzip of ``payload_bytes`` can take, with room for any compressor.

    Deflate's stored blocks add 5 bytes per 64 KiB, and the gzip header and trailer a few
    dozen (more with a file name); 1% and 64 KiB on top leave a wide margin.
    """
    return payload_bytes + payload_bytes // 100 + (1 << 16)


class GzipCheck:
    """Feed it the bytes of a ``.gz`` in order (``update``); then ``problem()`` says whether
    they are a good copy of ``remote``.

    ``update`` raises ``TooLarge`` as soon as the compressed or the decompressed stream is
    larger than the file can be.
    """

    def __init__(self, remote: RemoteFile):
        self.remote = remote
        self.limit = gz_limit(remote.payload_bytes)
        self.size = 0  # compressed bytes seen
        self.payload_size = 0
        self._head = b""
        self._gz_hash = hashlib.sha256()
        self._payload_hash = hashlib.sha256()
        self._inflater = zlib.decompressobj(wbits=31)  # 31: gzip framing
        self._damage: str | None = None

    def update(self, chunk: bytes) -> None:
        """Take the next bytes of the file."""
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(
                f"more than {self.limit:,} bytes, larger than any gzip of the "
                f"{self.remote.payload_bytes:,}-byte {self.remote.name.removesuffix('.gz')}"
            )
        if len(self._head) < 15:
            self._head += chunk[: 15 - len(self._head)]
        self._gz_hash.update(chunk)
        if self._damage is None:
            self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        while data:
            if self._inflater.eof:  # a file may hold several gzip members, one after another
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                out = self._inflater.decompress(data, SLICE_BYTES)
            except zlib.error as error:
                self._damage = f"damaged gzip data ({error})"
                return
            self.payload_size += len(out)
            if self.payload_size > self.remote.payload_bytes:
                raise TooLarge(
                    f"decompresses to more than the {self.remote.payload_bytes:,} bytes of "
                    f"{self.remote.name.removesuffix('.gz')}"
                )
            self._payload_hash.update(out)
            # Input left over: beyond max_length, or the start of the next member.
            inflater = self._inflater
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail

    def problem(self) -> str | None:
        """Why the bytes so far are not a good copy of the file, or None when they are."""
        digest = self._gz_hash.hexdigest()
        if digest == self.remote.gz_sha256:
            return None
        if self._head[:2] != GZIP_MAGIC:
            start = self._head.decode("ascii", "replace")
            return f"not a gzip file ({self.size} bytes starting {start!r})"
        if self._damage:
            return self._damage
        if not self._inflater.eof:
            return "damaged gzip data (it ends before the end of its compressed stream)"
        if self.payload_size != self.remote.payload_bytes:
            return (
                f"decompresses to {self.payload_size:,} bytes, not the "
                f"{self.remote.payload_bytes:,} of {self.remote.name.removesuffix('.gz')}"
            )
        if self.remote.payload_sha256 == self._payload_hash.hexdigest():
            return None
        return f"checksum mismatch (sha256 {digest[:16]}...)"
