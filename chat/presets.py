"""Presets: a user's named model, system prompt and parameters."""

from typing import Any

from . import conversations
from .models import Conversation, Preset


def preset_save(*, owner: Any, name: str, parameters: dict[str, Any]) -> Preset:
    """Save the panel's values under a name; an existing preset of that name is replaced."""
    values = {field: parameters[field] for field in conversations.PANEL_FIELDS}
    preset, _ = Preset.objects.update_or_create(owner=owner, name=name, defaults=values)
    return preset


def preset_delete(*, preset: Preset) -> None:
    preset.delete()


def conversation_create_from_preset(*, preset: Preset) -> Conversation:
    conversation = Conversation(owner=preset.owner)
    conversations.parameters_copy(source=preset, target=conversation)
    conversation.save()
    return conversation
