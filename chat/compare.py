"""Compare runs: one prompt, answered by 2-4 models or parameter sets at once.

The prompt is an ordinary user message under the current leaf, and each
column's reply is an ordinary child of it, so the replies are siblings in the
tree (the "2 / 3" controls reach them) and everything that works on a reply
(inspector, Get code, Retry, Regenerate, delete) works on them. The run and its
columns only record the grouping and each column's parameters.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from . import branches, conversations, generation, limits
from .models import CompareColumn, CompareRun, Conversation, Message

MIN_COLUMNS = 2
COMPARE_KEY_PREFIX = "c:"


def compare_send(
    *,
    conversation: Conversation,
    content: str,
    idempotency_key: str,
    parameter_sets: list[dict],
) -> CompareRun:
    """The form path: start the run and generate every column at once, in this request."""
    run, created = compare_start(
        conversation=conversation,
        content=content,
        idempotency_key=idempotency_key,
        parameter_sets=parameter_sets,
        claim=True,
    )
    if created:
        compare_generate(run=run)
    return run


def compare_start(
    *,
    conversation: Conversation,
    content: str,
    idempotency_key: str,
    parameter_sets: list[dict],
    claim: bool,
) -> tuple[CompareRun, bool]:
    """Commit the prompt, the run, its columns and a pending reply per column.

    `parameter_sets` are ParametersForm cleaned data, one per column. With
    `claim`, the caller generates the replies itself; otherwise each column
    waits for a browser stream to claim it. Returns (run, created); created is
    False when this idempotency key already started a run.
    """
    if not MIN_COLUMNS <= len(parameter_sets) <= CompareColumn.MAX_COLUMNS:
        raise ValidationError(
            f"Compare {MIN_COLUMNS} to {CompareColumn.MAX_COLUMNS} models or parameter sets."
        )
    idempotency_key = COMPARE_KEY_PREFIX + idempotency_key  # apart from the keys of sends
    existing = _run_for_key(conversation, idempotency_key)
    if existing is not None:
        return existing, False
    conversations.messages_check_room(conversation=conversation, adding=1 + len(parameter_sets))
    # Each column is a call: a 4-column run counts 4 against the per-minute limit.
    limits.upstream_calls_take(user_id=conversation.owner_id, calls=len(parameter_sets))
    return generation.start_once(
        lambda: _run_create(conversation, content, idempotency_key, parameter_sets, claim),
        existing=lambda: _run_for_key(conversation, idempotency_key),
        conversation=conversation,
        idempotency_key=idempotency_key,
    )


def _run_create(
    conversation: Conversation,
    content: str,
    idempotency_key: str,
    parameter_sets: list[dict],
    claim: bool,
) -> CompareRun:
    prompt = Message.objects.create(
        conversation=conversation,
        parent=conversation.current_leaf,
        role=Message.Role.USER,
        content=content,
        written=True,
        idempotency_key=idempotency_key,
    )
    run = CompareRun.objects.create(conversation=conversation, prompt=prompt)
    replies = []
    for position, parameters in enumerate(parameter_sets):
        column = CompareColumn.objects.create(
            run=run,
            position=position,
            generation_started=claim,
            model=parameters["model"],
            system_prompt=parameters.get("system_prompt") or "",
            temperature=parameters.get("temperature"),
            top_p=parameters.get("top_p"),
            max_tokens=parameters.get("max_tokens"),
            stop=parameters.get("stop") or [],
            extra_params=parameters.get("extra_params") or {},
        )
        replies.append(
            generation.reply_placeholder(
                conversation=conversation, parent=prompt, compare_column=column
            )
        )
    if conversation.title == Conversation._meta.get_field("title").default:
        conversation.title = conversations.title_from(content)
    # The first column is on screen until the user picks the reply to continue with.
    conversation.current_leaf = replies[0]
    conversation.save(update_fields=["current_leaf", "title", "updated"])
    return run


def _run_for_key(conversation: Conversation, idempotency_key: str) -> CompareRun | None:
    return CompareRun.objects.filter(
        conversation=conversation, prompt__idempotency_key=idempotency_key
    ).first()


def compare_generate(*, run: CompareRun) -> None:
    """Generate every pending column reply concurrently: the run takes as long as its slowest."""
    pending = list(
        Message.objects.filter(
            compare_column__run=run, status=Message.Status.PENDING
        ).select_related("conversation")
    )
    generation.replies_generate(replies=pending)


def compare_column_claim(*, column: CompareColumn) -> bool:
    """True for the one caller that gets to generate this column's first reply."""
    return bool(
        CompareColumn.objects.filter(pk=column.pk, generation_started=False).update(
            generation_started=True
        )
    )


def compare_columns(*, run: CompareRun) -> list[CompareColumn]:
    """The run's columns in order, each with `.reply`: its newest reply (a retry's), or None."""
    columns = list(run.columns.all())
    replies = Message.objects.filter(compare_column__in=columns).order_by("created", "id")
    newest = {reply.compare_column_id: reply for reply in replies}
    for column in columns:
        column.reply = newest.get(column.id)
    return columns


def compare_choose(*, run: CompareRun, reply: Message) -> None:
    """Continue the conversation from `reply`; the other columns stay as its siblings."""
    if reply.compare_column is None or reply.compare_column.run_id != run.id:
        raise ValidationError("That reply is not part of this comparison.")
    if reply.status == Message.Status.FAILED:
        raise ValidationError("A failed reply has nothing to continue from; retry it first.")
    with transaction.atomic():
        run.chosen = reply
        run.save(update_fields=["chosen", "updated"])
        branches.branch_switch(conversation=run.conversation, message=reply)
