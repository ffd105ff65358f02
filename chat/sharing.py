"""Share links: read-only snapshots of one branch, and continuing them elsewhere.

A snapshot holds its own copy of every file its messages show or its calls sent
(chat/exports.py); the shared page serves them from there, so a link never opens
the owner's files, and a revoked link stops serving them too.
"""

import base64
import binascii
import json
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from . import attachments, compare, conversations, exports, presenters
from .models import ApiCall, Attachment, CompareColumn, CompareRun, Conversation, Message, Share


def share_create(
    *,
    conversation: Conversation,
    show_inspector: bool,
    expires_in: timedelta | None,
    compare_run: CompareRun | None = None,
    show_response_headers: bool = False,
) -> Share:
    """A new link showing the branch on screen (or one compare run) as it is now."""
    return Share.objects.create(
        conversation=conversation,
        compare_run=compare_run,
        show_inspector=show_inspector,
        show_response_headers=show_response_headers,
        expires_at=_expiry(expires_in),
        **_snapshot(conversation, compare_run),
    )


def share_update_snapshot(*, share: Share) -> None:
    """The same URL, showing the conversation (or the compare run) as it is now."""
    for name, value in _snapshot(share.conversation, share.compare_run).items():
        setattr(share, name, value)
    share.save(update_fields=["snapshot", "snapshot_taken", "updated"])


def share_update_settings(
    *,
    share: Share,
    show_inspector: bool,
    show_response_headers: bool,
    expires_in: timedelta | None,
    keep_expiry: bool,
) -> None:
    share.show_inspector = show_inspector
    share.show_response_headers = show_response_headers
    if not keep_expiry:
        share.expires_at = _expiry(expires_in)
    share.save(update_fields=["show_inspector", "show_response_headers", "expires_at", "updated"])


def share_revoke(*, share: Share) -> None:
    """The URL stops working with the next request; the record stays in the list."""
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.save(update_fields=["revoked_at", "updated"])


def share_get_live(*, token: str, with_snapshot: bool = True) -> Share:
    """The share behind a URL, or 404 if there is none, or it was revoked or has expired.

    All three look the same from outside, so a URL tells nothing about links
    that no longer work.
    """
    shares = Share.objects.filter(token=token)
    share = (shares if with_snapshot else shares.defer("snapshot")).first()
    if share is None or share.state != Share.State.ACTIVE:
        raise Http404("This link does not exist or is no longer shared.")
    return share


def share_continue(*, share: Share, owner: Any) -> Conversation:
    """A new conversation for `owner`, copied from the snapshot; the original is untouched.

    Without the inspector on the link, its raw calls are not copied either, and
    without its response headers, the calls are copied without them.
    """
    document = share.snapshot
    if not share.show_inspector:
        document = {
            **document,
            "messages": [{**message, "calls": []} for message in document["messages"]],
        }
    elif not share.show_response_headers:
        document = {
            **document,
            "messages": [
                {
                    **message,
                    "calls": [{**call, "response_headers": {}} for call in message["calls"]],
                }
                for message in document["messages"]
            ],
        }
    return exports.conversation_import(owner=owner, document=document)


def shares_for(*, owner: Any) -> QuerySet[Share]:
    return Share.objects.filter(conversation__owner=owner).select_related(
        "conversation", "compare_run__conversation"
    )


def snapshot_messages(*, share: Share) -> list[Message]:
    """The snapshot as unsaved model objects, presented, so the page templates can render
    them; their files load from the share's own URLs. A snapshot taken before version 2
    of the format has each message's text only."""
    files = snapshot_attachments(snapshot=share.snapshot)
    messages = []
    for item in share.snapshot["messages"]:
        message = Message(
            role=item["role"],
            status=item["status"],
            content=item["content"],
            reasoning=item["reasoning"],
            parts=item.get("parts"),
            tool_calls=item.get("tool_calls"),
            tool_call_id=item.get("tool_call_id", ""),
            refusal=item.get("refusal", ""),
            extra=item.get("extra") or {},
            choice_index=item.get("choice_index"),
            finish_reason=item.get("finish_reason", ""),
            logprobs=item.get("logprobs"),
            written=item.get("written", item["role"] == Message.Role.USER),
            raw_body=item.get("raw_body", ""),
        )
        message.snapshot_id = item["id"]
        message.call_list = [_call(call, files) for call in item["calls"]]
        message.last_call = message.call_list[-1] if message.call_list else None
        messages.append(message)
    presenters.messages_present(
        messages,
        attachments=files,
        url_for=lambda attachment: reverse("shared_file", args=[share.token, attachment.sha256]),
    )
    return messages


def snapshot_attachments(*, snapshot: dict[str, Any]) -> dict[str, Attachment]:
    """The snapshot's files as unsaved attachments (without their bytes), by key."""
    return {
        sha: Attachment(
            sha256=sha,
            **{name: entry.get(name) for name in ("media_type", "filename", "width", "height")},
            size=entry.get("size") or 0,
        )
        for sha, entry in (snapshot.get("attachments") or {}).items()
    }


def snapshot_file(*, token: str, sha256: str) -> tuple[Attachment, bytes]:
    """A file of a live share's snapshot, read from the snapshot alone (not the rest of it,
    which may hold megabytes of calls and other files); 404 for any other file."""
    if not exports.SHA256.fullmatch(sha256):
        raise Http404("No such file.")
    share = share_get_live(token=token, with_snapshot=False)
    entry = (
        Share.objects.filter(pk=share.pk)
        .values_list(KeyTransform(sha256, KeyTransform("attachments", "snapshot")), flat=True)
        .first()
    )
    try:
        data = base64.b64decode(entry["data"], validate=True)
    except (TypeError, KeyError, binascii.Error, ValueError):
        raise Http404("No such file.") from None
    # Served as what its bytes are, whatever the snapshot says.
    sniffed = attachments.sniff(data)
    if sniffed is None or not isinstance(entry.get("filename"), str):
        raise Http404("No such file.")
    attachment = Attachment(
        sha256=sha256, media_type=sniffed.media_type, filename=entry["filename"], size=len(data)
    )
    return attachment, data


def snapshot_compare(*, share: Share, messages: list[Message]) -> tuple[list, list]:
    """For a compare link: (the messages up to the prompt, the columns with their reply).

    Each column is an unsaved CompareColumn with `.reply`, the snapshot's reply or None.
    """
    by_id = {message.snapshot_id: message for message in messages}
    prompt = [m.snapshot_id for m in messages if m.role == Message.Role.USER][-1]
    run = next(run for run in share.snapshot["compare_runs"] if run["prompt"] == prompt)
    columns = []
    for item in run["columns"]:
        column = CompareColumn(
            position=item["position"],
            model=item["model"],
            system_prompt=item["system_prompt"],
            **item["parameters"],
        )
        column.reply = by_id.get(item["replies"][-1]) if item["replies"] else None
        column.chosen = run["chosen"] is not None and run["chosen"] in item["replies"]
        columns.append(column)
    replies = {column.reply.snapshot_id for column in columns if column.reply is not None}
    return [m for m in messages if m.snapshot_id not in replies], columns


def snapshot_parameters(*, share: Share) -> list[tuple[str, str]]:
    """The parameters that were set, as JSON text (0 is a value; null and empty are not)."""
    return [
        (name, json.dumps(value, ensure_ascii=False))
        for name, value in share.snapshot["parameters"].items()
        if value not in (None, [], {})
    ]


def _call(document: dict[str, Any], files: dict[str, Attachment]) -> ApiCall:
    fields = {name: document[name] for name in exports.CALL_FIELDS}
    call = ApiCall(
        **fields,
        request_splices=document.get("request_splices", []),
        cost_estimated=document.get("cost_estimated", False),
        model=document.get("model", ""),
    )
    # The inspector names the files cut out of the body, and Get code reads them, from
    # the snapshot's files: the call has no conversation to look them up in.
    call._spliced = files
    return call


def _snapshot(conversation: Conversation, run: CompareRun | None) -> dict[str, Any]:
    if run is None:
        messages = conversations.conversation_path(conversation=conversation)
        leaf = None
    else:
        # The conversation up to the prompt, then each column's newest reply.
        messages = conversations.message_path(conversation=conversation, leaf_id=run.prompt_id)
        replies = [c.reply for c in compare.compare_columns(run=run) if c.reply is not None]
        messages += replies
        leaf = run.chosen or (replies[0] if replies else None)
    document = exports.conversation_snapshot(
        conversation=conversation, messages=messages, leaf=leaf
    )
    return {"snapshot": document, "snapshot_taken": timezone.now()}


def _expiry(expires_in: timedelta | None) -> Any:
    return timezone.now() + expires_in if expires_in is not None else None
