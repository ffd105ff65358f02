"""What the demo upstream says about the files a user message carried.

A test (or a person trying the app offline) needs to see that an attachment reached the
upstream intact: its media type, size, a hash of its bytes and, for an image, the pixel
size its header declares. This module turns the content parts of one message into that
one sentence. Standard library only, like the demo upstream itself: the image headers are
parsed by hand (PNG, JPEG, GIF, WebP) rather than with an imaging library.

Every part is untrusted: a malformed data URL, bad base64 or a truncated header is
described as such, never raised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from .file_types import image_size, pdf_page_count, sniff

__all__ = ["attachment_sentence", "describe_part"]

# Parts that carry text or tool traffic, not a file.
NOT_ATTACHMENTS = frozenset({"text", "input_text", "tool_result", "tool_use", "thinking"})
LABEL_LIMIT = 80


def attachment_sentence(content: Any) -> str | None:
    """``Received 2 attachments: image/png 1234 bytes 64x48 sha256 …; …`` for a message's
    content, or None when it carries no file (a plain string, or text parts only)."""
    if not isinstance(content, list):
        return None
    facts = [fact for fact in map(describe_part, content) if fact is not None]
    if not facts:
        return None
    noun = "attachment" if len(facts) == 1 else "attachments"
    return f"Received {len(facts)} {noun}: " + "; ".join(facts)


def describe_part(part: Any) -> str | None:
    """The facts about one content part, or None when it is not a file (text, tools)."""
    if not isinstance(part, dict):
        return "a part that is not an object"
    kind = part.get("type")
    if kind in NOT_ATTACHMENTS:
        return None
    if kind == "image_url":  # OpenAI: {"image_url": {"url": ...}}, or the URL alone
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _describe_url(url, "image")
    if kind == "file":  # OpenAI: {"file": {"filename", "file_data": "data:...;base64,..."}}
        return _describe_file(part.get("file"))
    if kind == "input_audio":  # OpenAI: {"input_audio": {"data": <base64>, "format": "wav"}}
        audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
        audio_format = audio.get("format") if isinstance(audio.get("format"), str) else "unknown"
        return _describe_base64(audio.get("data"), f"audio/{_label(audio_format)}")
    if kind in ("image", "document"):  # Anthropic: {"source": {"type": "base64", ...}}
        return _describe_source(part.get("source"), kind)
    return f"a part of unknown type {_label(json.dumps(kind, ensure_ascii=False))}"


def _describe_url(url: Any, noun: str) -> str:
    if not isinstance(url, str):
        return f"{noun} part without a URL"
    scheme = url[:8].lower()
    if scheme.startswith(("http://", "https://")):
        return f"remote {noun}, not fetched"
    if not scheme.startswith("data:"):
        return f"{noun} URL with an unsupported scheme, not fetched"
    return _describe_data_url(url)


def _describe_file(file: Any) -> str:
    if not isinstance(file, dict):
        return "file part without a file object"
    filename = file.get("filename") if isinstance(file.get("filename"), str) else None
    data = file.get("file_data")
    if isinstance(data, str):
        if data.startswith("data:"):
            return _describe_data_url(data, filename)
        # Bare base64 (some clients leave the data: prefix out): the bytes say what it is.
        return _describe_base64(data, None, filename)
    if isinstance(file.get("file_id"), str):
        return f"file reference {_label(file['file_id'])}, not fetched"
    return "file part without file_data"


def _describe_source(source: Any, noun: str) -> str:
    if not isinstance(source, dict):
        return f"{noun} block without a source"
    media_type = source.get("media_type") if isinstance(source.get("media_type"), str) else None
    kind = source.get("type")
    if kind == "base64":
        return _describe_base64(source.get("data"), media_type)
    if kind == "url":
        return f"remote {noun}, not fetched"
    if kind == "text" and isinstance(source.get("data"), str):
        return _describe_bytes(source["data"].encode("utf-8", "surrogatepass"), media_type)
    return f"{noun} block with an unsupported source"


def _describe_data_url(url: str, filename: str | None = None) -> str:
    header, comma, data = url[len("data:") :].partition(",")
    if not comma:
        return "malformed data URL (no comma)"
    media_type, *params = header.split(";")
    media_type = media_type.strip() or "text/plain"
    if "base64" in (param.strip().lower() for param in params):
        return _describe_base64(data, media_type, filename)
    return _describe_bytes(unquote_to_bytes(data), media_type, filename)


def _describe_base64(data: Any, media_type: str | None, filename: str | None = None) -> str:
    label = _label(media_type) if media_type else "file data"
    if not isinstance(data, str):
        return f"{label} without data"
    try:
        decoded = base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError):
        return f"{label} malformed base64, not decoded"
    return _describe_bytes(decoded, media_type, filename)


def _describe_bytes(data: bytes, media_type: str | None, filename: str | None = None) -> str:
    sniffed = sniff(data)
    declared = media_type or sniffed or "application/octet-stream"
    facts = [_label(declared)]
    if filename is not None:
        facts.append(json.dumps(_label(filename), ensure_ascii=False))
    facts.append(f"{len(data)} bytes")
    if declared.lower().startswith("image/") or (sniffed or "").startswith("image/"):
        size = image_size(data)
        facts.append(f"{size[0]}x{size[1]}" if size else "dimensions unreadable")
    if "application/pdf" in (declared.lower(), sniffed):
        pages = pdf_page_count(data)
        if pages:
            facts.append(f"{pages} page" if pages == 1 else f"{pages} pages")
    facts.append(f"sha256 {hashlib.sha256(data).hexdigest()[:12]}")
    if sniffed and sniffed != declared.lower():
        facts.append(f"(the bytes look like {sniffed})")
    return " ".join(facts)


def _label(text: str) -> str:
    """One line of at most LABEL_LIMIT characters: names and types come from the client."""
    line = " ".join(text.split())
    return line if len(line) <= LABEL_LIMIT else line[:LABEL_LIMIT] + "…"
