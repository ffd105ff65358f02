"""Views for usage and presets."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import presets, usage
from ..forms import ChatForm, PresetNameForm
from ..models import Preset
from .pages import owned_conversation, panel_form, render_conversation


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    context = {"usage": usage.user_usage(owner=request.user, days=30), "days": 30}
    return render(request, "chat/usage.html", context)


@login_required
@require_GET
def preset_list(request: HttpRequest) -> HttpResponse:
    context = {"presets": Preset.objects.filter(owner=request.user)}
    return render(request, "chat/preset_list.html", context)


@login_required
@require_POST
def preset_save(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Save the parameter panel as posted (not necessarily sent yet) under a name.

    The page is drawn again from what was posted, not redirected: the panel and a
    half-written message stay as they were, whether the preset was saved or not.
    """
    conversation = owned_conversation(request, public_id)
    name_form = PresetNameForm(request.POST)
    form = panel_form(request)
    form.errors.pop("idempotency_key", None)
    if not name_form.is_valid() or form.errors:
        messages.error(request, _preset_problem(name_form, form))
        return render_conversation(request, conversation, form, status=400)
    name = name_form.cleaned_data["preset_name"]
    presets.preset_save(owner=request.user, name=name, parameters=form.cleaned_data)
    messages.success(request, f"Saved preset “{name}”.")
    return render_conversation(request, conversation, form)


@login_required
@require_POST
def preset_start(request: HttpRequest, preset_id: uuid.UUID) -> HttpResponse:
    preset = get_object_or_404(Preset, public_id=preset_id, owner=request.user)
    conversation = presets.conversation_create_from_preset(preset=preset)
    return redirect(conversation)


@login_required
@require_POST
def preset_delete(request: HttpRequest, preset_id: uuid.UUID) -> HttpResponse:
    preset = get_object_or_404(Preset, public_id=preset_id, owner=request.user)
    presets.preset_delete(preset=preset)
    return redirect("preset_list")


def _preset_problem(name_form: PresetNameForm, form: ChatForm) -> str:
    if not name_form.is_valid():
        return "Preset not saved: " + " ".join(name_form.errors.get("preset_name", []))
    fields = ", ".join(sorted(form.errors))
    return f"Preset not saved: fix the parameters first ({fields})."
