"""Conversations, their message tree, and the raw record of every upstream call."""

import json
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class PanelParameters(models.Model):
    """The parameter panel's values: what a request is built from.

    Held by a conversation (for its next request), a compare column and a preset.
    Parameters are nullable: null means "not set", and unset fields are never sent.
    """

    model = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    stop = models.JSONField(default=list, blank=True)
    extra_params = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in cls._meta.fields)


class Conversation(PanelParameters):
    """A chat with one model; keeps the parameters the next request will use."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default="New conversation")
    # The leaf of the branch on screen; the page shows the path from the root to it.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [
            # The conversation list: a user's conversations, most recently active first.
            models.Index(fields=["owner", "-updated"], name="conversation_owner_updated"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__isnull=True) | Q(temperature__gte=0),
                name="conversation_temperature_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(top_p__isnull=True) | (Q(top_p__gte=0) & Q(top_p__lte=1)),
                name="conversation_top_p_in_unit_range",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("conversation_detail", args=[self.public_id])


class Message(models.Model):
    """One node of a conversation's message tree."""

    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        DEVELOPER = "developer", "Developer"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        TOOL = "tool", "Tool"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the model"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"
        INTERRUPTED = "interrupted", "Interrupted"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role)
    status = models.CharField(max_length=16, choices=Status, default=Status.COMPLETE)
    # The text of the message: the whole content when the API's content is a string,
    # else the text of its parts (for titles, search and Markdown). `parts` is then
    # the API's list of content parts as sent or received, attachments referenced
    # by id instead of inlined (chat/wire.py).
    content = models.TextField(blank=True)
    parts = models.JSONField(null=True, blank=True)
    reasoning = models.TextField(blank=True)
    # An assistant message's tool calls, and a tool message's answer to one, as on the wire.
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    refusal = models.TextField(blank=True)
    # The message's other keys as received or written (name, annotations, audio...),
    # kept and sent back as they were.
    extra = models.JSONField(default=dict, blank=True)
    # A reply's choice: its index among the `n` a call asked for, its own finish
    # reason, and its token log probabilities when asked for.
    choice_index = models.PositiveSmallIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=64, blank=True)
    logprobs = models.JSONField(null=True, blank=True)
    attachments = models.ManyToManyField("Attachment", blank=True, related_name="messages")
    # Written by the user, whatever the role (a few-shot reply, a prefill, a tool
    # result), rather than generated by a call.
    written = models.BooleanField(default=False)
    # Set on user messages from the form's hidden token: one submit, one generation.
    idempotency_key = models.CharField(max_length=64, blank=True)
    # Raw request mode: the whole JSON body the user wrote for the reply to this
    # message, byte for byte, sent as typed instead of one built from the conversation.
    raw_body = models.TextField(blank=True)
    # Set by the Stop button; the streaming request that owns the reply polls it,
    # so Stop works whichever app process serves it.
    stop_requested = models.BooleanField(default=False)
    # A reply made by a compare run answers with its column's parameters, not the
    # conversation's (retries of it too).
    compare_column = models.ForeignKey(
        "CompareColumn", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            # Loading a conversation's tree in creation order.
            models.Index(fields=["conversation", "created"], name="message_conversation_created"),
            # A message's siblings, for the "2 / 3" branch controls.
            models.Index(fields=["parent", "created"], name="message_parent_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["system", "developer", "user", "assistant", "tool"]),
                name="message_role_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "complete", "failed", "stopped", "interrupted"]),
                name="message_status_valid",
            ),
            models.UniqueConstraint(
                fields=["conversation", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="message_unique_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def can_retry(self) -> bool:
        return self.role == self.Role.ASSISTANT and self.status in {
            self.Status.FAILED,
            self.Status.STOPPED,
            self.Status.INTERRUPTED,
        }


class CompareRun(models.Model):
    """One prompt sent to several models or parameter sets at once.

    The prompt is a user message; each column's reply is a child of it, so the
    replies are ordinary siblings in the tree and the run only groups them.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="compare_runs"
    )
    prompt = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="compare_runs")
    # The reply the user continued with; null until they pick one.
    chosen = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"Compare run on {self.prompt}"

    def get_absolute_url(self) -> str:
        return reverse("compare_detail", args=[self.conversation.public_id, self.public_id])


class CompareColumn(PanelParameters):
    """One parameter set of a compare run: the same fields as a conversation's panel."""

    MAX_COLUMNS = 4

    run = models.ForeignKey(CompareRun, on_delete=models.CASCADE, related_name="columns")
    position = models.PositiveSmallIntegerField()
    # Claimed once by whatever generates the first reply (the form path at once, a
    # browser's stream when it opens): one submit, one generation per column.
    generation_started = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "position"], name="comparecolumn_unique_position"
            ),
            models.CheckConstraint(
                condition=Q(position__lt=4), name="comparecolumn_position_below_max"
            ),
        ]

    def __str__(self) -> str:
        return f"Column {self.position + 1}: {self.model}"

    @property
    def number(self) -> int:
        return self.position + 1

    def parameters_shown(self) -> list[tuple[str, str]]:
        """The parameters this column set (unset ones are not sent), as (name, value)."""
        shown = [
            (name, str(getattr(self, name)))
            for name in ("temperature", "top_p", "max_tokens")
            if getattr(self, name) is not None
        ]
        if self.stop:
            shown.append(("stop", ", ".join(self.stop)))
        if self.system_prompt:
            shown.append(("system prompt", self.system_prompt))
        shown.extend((key, json.dumps(value)) for key, value in self.extra_params.items())
        return shown


class ApiCall(models.Model):
    """One HTTP request to the upstream, stored exactly as sent and received."""

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="calls")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="calls"
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status, default=Status.SENDING)
    method = models.CharField(max_length=8, default="POST")
    url = models.URLField(max_length=500)
    request_headers = models.JSONField(default=dict)  # the key is redacted before storing
    # Byte for byte what went over the wire (UTF-8), except the base64 of attachments:
    # each is cut out and its place kept in request_splices, [{"at": offset in this
    # text, "attachment": public id}], so a file sent on every turn is stored once.
    # ApiCall.sent_body() puts them back.
    request_body = models.TextField()
    request_splices = models.JSONField(default=list, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)  # as received; invalid UTF-8 is replaced
    # Streams: every server-sent event with its arrival time, and the chunks folded
    # into one chat.completion object.
    stream_events = models.JSONField(default=list, blank=True)
    assembled_response = models.JSONField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    usd_spent = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    # True when the upstream reported no cost and usd_spent was computed from the
    # catalogue's pricing; shown as an estimate.
    cost_estimated = models.BooleanField(default=False)
    model = models.CharField(max_length=200, blank=True)  # as sent, for usage by model
    # The response_format as sent, to check the reply against (the body may be megabytes).
    response_format = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            # The calls behind the messages on a conversation page.
            models.Index(fields=["message", "created"], name="apicall_message_created"),
            # The usage page: one owner's calls over a date range.
            models.Index(fields=["conversation", "created"], name="apicall_conversation_created"),
            # A conversation's usage totals, answered from the index alone: on SQLite a
            # row's later columns sit behind its request and response bodies.
            models.Index(
                fields=[
                    "conversation",
                    "prompt_tokens",
                    "completion_tokens",
                    "reasoning_tokens",
                    "usd_spent",
                    "cost_estimated",
                ],
                name="apicall_conversation_totals",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["sending", "succeeded", "failed"]),
                name="apicall_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.get_status_display()})"

    @property
    def is_stream(self) -> bool:
        return self.assembled_response is not None

    def sent_body(self) -> str:
        """The request body exactly as sent, attachments' base64 put back in place."""
        if not self.request_splices:
            return self.request_body
        from .wire import splice_in  # the wire format's one home

        return splice_in(self.request_body, self.request_splices, self.spliced_attachments())

    def shown_request_body(self) -> str:
        """The request body for a page: each attachment's base64 named where it was cut out."""
        if not self.request_splices:
            return self.request_body
        from .wire import shown

        return shown(self.request_body, self.request_splices, self.spliced_attachments())

    def splices_named(self) -> list[tuple[int, str]]:
        """(offset, file name) of each cut-out attachment, for Get code."""
        attachments = self.spliced_attachments()
        return [
            (splice["at"], getattr(attachments.get(splice["attachment"]), "filename", "file"))
            for splice in self.request_splices
        ]

    def spliced_attachments(self) -> dict[str, "Attachment"]:
        """The attachments the splices name, by public id (a share's snapshot sets them)."""
        if not self.request_splices or self.conversation_id is None:
            return getattr(self, "_spliced", None) or {}
        if getattr(self, "_spliced", None) is None:
            ids = {splice["attachment"] for splice in self.request_splices}
            found = Attachment.objects.filter(
                owner_id=self.conversation.owner_id, public_id__in=ids
            ).defer("data")
            self._spliced = {str(attachment.public_id): attachment for attachment in found}
        return self._spliced

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per second after the first token (whole call if not streamed)."""
        if not (self.completion_tokens and self.latency_ms):
            return None
        generating_ms = self.latency_ms - (self.first_token_ms or 0)
        return (
            round(self.completion_tokens * 1000 / generating_ms, 1) if generating_ms > 0 else None
        )


class Attachment(models.Model):
    """A file attached to messages: stored once per owner and content, however often sent."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    sha256 = models.CharField(max_length=64)
    media_type = models.CharField(max_length=100)
    filename = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    data = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            # The same file attached again is the same row: stored once.
            models.UniqueConstraint(fields=["owner", "sha256"], name="attachment_unique_content"),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.media_type}, {self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


def new_share_token() -> str:
    """192 random bits, URL-safe: the only secret a share link carries."""
    return secrets.token_urlsafe(24)


class Share(models.Model):
    """A read-only link to a snapshot of one branch of a conversation.

    The snapshot is a document in the export format (chat/exports.py), so the
    shared page never reads the live conversation: messages added later, and
    the owner's other conversations, cannot appear on it.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    # Used in the owner's management URLs; the token is only ever in the share URL.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    # Set when the link shows one compare run side by side rather than the branch on screen.
    compare_run = models.ForeignKey(
        "CompareRun", null=True, blank=True, on_delete=models.CASCADE, related_name="shares"
    )
    snapshot = models.JSONField()
    snapshot_taken = models.DateTimeField()
    show_inspector = models.BooleanField(
        default=True, help_text="Show each call's raw JSON and Get code on the shared page."
    )
    # Off unless the owner shows them: the upstream's headers can name its account,
    # organisation, rate limits and request ids, which a reader has no need of.
    show_response_headers = models.BooleanField(
        default=False, help_text="Show the upstream's response headers with the raw JSON."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            # The "Shared links" page: the links made from one conversation, newest first.
            models.Index(fields=["conversation", "-created"], name="share_conversation_created"),
        ]

    def __str__(self) -> str:
        return f"Share of {self.snapshot.get('title', 'a conversation')}"

    def get_absolute_url(self) -> str:
        return reverse("shared_conversation", args=[self.token])

    @property
    def state(self) -> "Share.State":
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return self.State.EXPIRED
        return self.State.ACTIVE


def new_invitation_token() -> str:
    """256 random bits, URL-safe: whoever holds the link may make one account."""
    return secrets.token_urlsafe(32)


class Invitation(models.Model):
    """A one-time sign-up link, made by an operator with `manage.py invite`.

    With SIGNUP_MODE=invite only its holder can sign up, once: the account made
    with it is recorded, and the link then stops working.
    """

    class State(models.TextChoices):
        OPEN = "open", "Not used yet"
        USED = "used", "Used"
        EXPIRED = "expired", "Expired"

    token = models.CharField(
        max_length=64, unique=True, default=new_invitation_token, editable=False
    )
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for (the operator's).")
    expires_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitation",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(used_by__isnull=True) | Q(used_at__isnull=False),
                name="invitation_used_by_has_used_at",
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation {self.token[:6]}… ({self.state.label})"

    @property
    def state(self) -> "Invitation.State":
        if self.used_at is not None:
            return self.State.USED
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return self.State.EXPIRED
        return self.State.OPEN


class Preset(PanelParameters):
    """A named set of model, system prompt and parameters a user can start conversations from."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presets"
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Saving under an existing name replaces that preset.
            models.UniqueConstraint(fields=["owner", "name"], name="preset_unique_owner_name"),
        ]

    def __str__(self) -> str:
        return self.name
