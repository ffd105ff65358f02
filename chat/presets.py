"""Presets: a user's named model, system prompt and parameters."""

from typing import Any

from django.db import transaction

from . import services
from .models import Conversation, Preset

PRESET_FIELDS = (*services.PARAMETER_FIELDS, "extra_params")


def preset_save(*, owner: Any, name: str, parameters: dict[str, Any]) -> Preset:
    """Save the panel's values under a name; an existing preset of that name is replaced."""
    values = {field: parameters[field] for field in PRESET_FIELDS}
    preset, _ = Preset.objects.update_or_create(owner=owner, name=name, defaults=values)
    return preset


def preset_delete(*, preset: Preset) -> None:
    preset.delete()


def conversation_create_from_preset(*, preset: Preset) -> Conversation:
    with transaction.atomic():
        conversation = Conversation(owner=preset.owner)
        for field in PRESET_FIELDS:
            setattr(conversation, field, getattr(preset, field))
        conversation.save()
    return conversation
