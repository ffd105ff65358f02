"""What a file is, from its first bytes: the media type, an image's pixel size, PDF pages.

Standard library only (the demo upstream uses it too, without Django): the image
headers are parsed by hand (PNG, JPEG, GIF, WebP) rather than with an imaging
library. Every input is untrusted: a truncated or malformed header gives None.
"""

import re
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but not.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# "/Type /Page" but not "/Type /Pages" (the page tree's node).
PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def sniff(data: bytes) -> str | None:
    """The media type the first bytes announce: PNG, JPEG, GIF, WebP or PDF, else None."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF or WebP header; None if unreadable."""
    try:
        match sniff(data):
            case "image/png":
                if data[12:16] != b"IHDR":
                    return None
                width, height = struct.unpack(">II", data[16:24])
                return width, height
            case "image/gif":
                width, height = struct.unpack("<HH", data[6:10])
                return width, height
            case "image/jpeg":
                return _jpeg_size(data)
            case "image/webp":
                return _webp_size(data)
    except struct.error:  # the header is cut short
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments up to the first start-of-frame, which holds the size."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
            continue
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            return None
        position += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14 bits each, minus one
        if data[20:21] != b"\x2f" or len(data) < 25:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24 bits each, minus one
        if len(data) < 30:
            return None
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def pdf_page_count(data: bytes) -> int:
    """Page objects in a PDF, counted in the plain text (0 when they sit in object streams)."""
    return len(PDF_PAGE.findall(data))
