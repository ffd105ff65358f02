"""Files attached to messages: what is accepted, and storing each one once.

A file's type is read from its first bytes, never taken from the browser or the
file name; only the types both bundled models accept are kept (PNG, JPEG, WebP,
GIF, PDF). The same bytes attached again, in any conversation of the same user,
are the same Attachment row: a file resent on every turn is stored once.
"""

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat

from . import file_types
from .models import Attachment

ACCEPTED = "PNG, JPEG, WebP, GIF or PDF"
ACCEPT_ATTRIBUTE = "image/png,image/jpeg,image/webp,image/gif,application/pdf"
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class Sniffed:
    media_type: str
    width: int | None = None
    height: int | None = None


def sniff(data: bytes) -> Sniffed | None:
    """The media type (and an image's size in pixels) from the file's own header."""
    media_type = file_types.sniff(data)
    if media_type is None:
        return None
    size = file_types.image_size(data) if media_type.startswith("image/") else None
    return Sniffed(media_type, *(size or (None, None)))


def check_files(files: list) -> list[tuple[str, bytes, Sniffed]]:
    """The uploaded files read and checked against the limits; a ValidationError naming
    the file and the limit otherwise (nothing is stored until every file passes)."""
    if len(files) > settings.MAX_ATTACHMENTS_PER_MESSAGE:
        raise ValidationError(
            f"Attach at most {settings.MAX_ATTACHMENTS_PER_MESSAGE} files to one message "
            f"({len(files)} were chosen)."
        )
    checked, total = [], 0
    for upload in files:
        name = (upload.name or "file")[-MAX_FILENAME_CHARS:]
        if upload.size > settings.MAX_ATTACHMENT_BYTES:
            raise ValidationError(
                f"{name} is {filesizeformat(upload.size)}; a file may be at most "
                f"{filesizeformat(settings.MAX_ATTACHMENT_BYTES)}."
            )
        total += upload.size
        if total > settings.MAX_MESSAGE_ATTACHMENT_BYTES:
            raise ValidationError(
                "The files together are larger than "
                f"{filesizeformat(settings.MAX_MESSAGE_ATTACHMENT_BYTES)}, the most one "
                "message may carry."
            )
        data = upload.read()
        sniffed = sniff(data)
        if sniffed is None:
            raise ValidationError(f"{name} is not a {ACCEPTED} file.")
        checked.append((name, data, sniffed))
    return checked


def attachment_store(*, owner: object, filename: str, data: bytes, sniffed: Sniffed) -> Attachment:
    """The attachment for these bytes: the stored one if the owner has it already."""
    digest = hashlib.sha256(data).hexdigest()
    found = Attachment.objects.filter(owner=owner, sha256=digest).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Attachment.objects.create(
                owner=owner,
                sha256=digest,
                media_type=sniffed.media_type,
                filename=filename,
                size=len(data),
                width=sniffed.width,
                height=sniffed.height,
                data=data,
            )
    except IntegrityError:  # the same file stored by a concurrent submit
        return Attachment.objects.get(owner=owner, sha256=digest)


def file_response(attachment: Attachment | None, *, data: bytes | None = None) -> HttpResponse:
    """The bytes of a stored file: images shown, PDFs downloaded, neither ever run.

    Its type is the one its bytes were checked to be. The CSP sandbox keeps even a
    file opened on its own from scripting or loading anything.
    """
    response = HttpResponse(
        bytes(attachment.data) if data is None else data, content_type=attachment.media_type
    )
    disposition = "inline" if attachment.is_image else "attachment"
    response["Content-Disposition"] = (
        f"{disposition}; filename*=UTF-8''{quote(attachment.filename)}"
    )
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    # The same id always has the same bytes.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
