"""What a media file is, from its bytes: the facts FFmpeg's "cannot open" does not say.

Used only to explain a refusal precisely, and to tell a truncated file (its container declares
more bytes than there are) from one whose duration header merely disagrees with its frames
(complete file, wrong header). Nothing here decodes video; at most the MP4 index (``moov``) is
read, and only up to ``MAX_INDEX_BYTES``.

>>> describe("clip.mp4")      # e.g. Layout(kind="mp4", truncated=True, has_index=False, ...)
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEAD_BYTES = 64
MAX_INDEX_BYTES = 64 << 20  # an MP4 index larger than this is not read (only a handler scan needs it)

# leading bytes of still-image formats: (offset, magic, name, usual extension)
_IMAGE_MAGIC = ((0, b"\xff\xd8\xff", "JPEG", ".jpg"), (0, b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
                (0, b"II*\x00", "TIFF", ".tif"), (0, b"MM\x00*", "TIFF", ".tif"))
# leading bytes of audio-only containers: ((offset, magic), ...) all of which must match
_AUDIO_MAGIC = (((0, b"RIFF"), (8, b"WAVE")), ((0, b"ID3"),), ((0, b"fLaC"),), ((0, b"OggS"),), ((4, b"ftypM4A"),),
                ((0, b"\xff\xfb"),), ((0, b"\xff\xf3"),), ((0, b"\xff\xf1"),), ((0, b"\xff\xf9"),))
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SEGMENT = b"\x18\x53\x80\x67"


@dataclass
class Layout:
    """What the bytes say. ``truncated``: the container declares data past the end of the file
    (None where the format is not one we can check). MP4 only: ``has_index`` (a ``moov`` box)
    and ``handlers`` (track kinds: ``vide``, ``soun``...)."""

    kind: str  # "mp4", "matroska", "avi", "image", "audio", "text" or "unknown"
    truncated: bool | None = None
    has_index: bool | None = None
    handlers: list[str] = field(default_factory=list)
    image_format: tuple[str, str] | None = None  # (name, usual extension) for a still image

    @property
    def audio_only(self) -> bool:
        return self.kind == "audio" or (bool(self.handlers) and "soun" in self.handlers and "vide" not in self.handlers)


def read_head(path: str | os.PathLike, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes (raises ``PermissionError`` for a file the user may not read)."""
    with open(path, "rb") as handle:
        return handle.read(size)


def image_format(head: bytes) -> tuple[str, str] | None:
    """(name, usual extension) when ``head`` starts like a still image (GIF is a video here)."""
    for offset, magic, name, ext in _IMAGE_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name, ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", ".webp"
    return None


def _is_audio(head: bytes) -> bool:
    return any(all(head[o:o + len(m)] == m for o, m in rule) for rule in _AUDIO_MAGIC)


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(head) and all(c >= 9 for c in head)


def describe(path: str | os.PathLike) -> Layout:
    """Look at the file's bytes (see ``Layout``)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip") and head[4:11] != b"ftypM4A":
            return _mp4_layout(handle, size)
        if head[:4] == _EBML_MAGIC:
            return Layout("matroska", truncated=_matroska_truncated(handle, size))
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return Layout("avi", truncated=struct.unpack("<I", head[4:8])[0] + 8 > size)
    if fmt := image_format(head):
        return Layout("image", image_format=fmt)
    if _is_audio(head):
        return Layout("audio")
    if _is_text(head):
        return Layout("text")
    return Layout("unknown")


def _mp4_layout(handle, size: int) -> Layout:
    """Walk the top-level boxes of an ISO-BMFF file (MP4, MOV, 3GP)."""
    layout = Layout("mp4", truncated=False, has_index=False)
    offset = 0
    while offset + 8 <= size:
        handle.seek(offset)
        box_size, box_type = struct.unpack(">I4s", handle.read(8))
        header = 8
        if box_size == 1:
            box_size, header = struct.unpack(">Q", handle.read(8))[0], 16
        elif box_size == 0:
            box_size = size - offset  # to the end of the file
        if box_size < header or not all(32 <= c < 127 for c in box_type):
            return Layout("unknown")  # not a box: not an MP4 after all, or damaged beyond reading
        if box_type == b"moov":
            layout.has_index = True
            if offset + box_size <= size and box_size <= MAX_INDEX_BYTES:
                handle.seek(offset)
                layout.handlers = _handlers(handle.read(box_size))
        if offset + box_size > size:
            layout.truncated = True
            break
        offset += box_size
    return layout


def _handlers(moov: bytes) -> list[str]:
    """Track kinds named by the ``hdlr`` boxes inside ``moov`` (``vide``, ``soun``, ``meta``...)."""
    kinds, at = [], moov.find(b"hdlr")
    while at >= 0:
        kind = moov[at + 12:at + 16]
        if len(kind) == 4 and kind.isalpha():
            kinds.append(kind.decode("ascii"))
        at = moov.find(b"hdlr", at + 4)
    return kinds


def _vint(data: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``at``: (value, length in bytes); None if malformed."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 8 - data[at].bit_length() + 1
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at:at + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def _matroska_truncated(handle, size: int) -> bool | None:
    """Does the Segment (everything after the EBML header) declare more bytes than the file has?"""
    handle.seek(0)
    data = handle.read(256)
    header_size = _vint(data, 4, keep_marker=False)
    if header_size is None:
        return None
    at = 4 + header_size[1] + header_size[0]
    if data[at:at + 4] != _MATROSKA_SEGMENT:
        return None
    seg_size = _vint(data, at + 4, keep_marker=False)
    if seg_size is None:
        return None
    value, length = seg_size
    if value == (1 << (7 * length)) - 1:  # "unknown size" (a live recording): cannot tell
        return None
    return at + 4 + length + value > size
