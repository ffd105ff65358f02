"""Forms validate and convert; views read only cleaned_data. All bounds live here."""

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.core.validators import MinValueValidator
from django.template.defaultfilters import filesizeformat

from . import attachments, catalogue, limits, raw_request, schema_form, tools_editor, wire
from .models import CompareColumn, Conversation

_RESOLVE = object()  # "look the schema up from the form's model"

MAX_STOP_SEQUENCES = 4
MAX_STOP_SEQUENCE_CHARS = 200
MAX_JSON_DEPTH = schema_form.MAX_JSON_DEPTH
# Keys the app controls itself; a user setting them in "extra" would break the call.
RESERVED_KEYS = {
    "model": "Choose the model with the Model field.",
    "messages": "Messages come from the conversation.",
    "stream": "Streaming is chosen by the app, not a parameter.",
}


class SignUpForm(UserCreationForm):
    label_suffix = ""


class ParametersForm(forms.Form):
    """The parameter panel: what the next request will use, saved with the conversation."""

    model = forms.CharField(
        label="Model",
        max_length=200,
        help_text="Any model id the upstream accepts; suggestions come from its catalogue.",
        widget=forms.TextInput(attrs={"list": "model-options", "autocomplete": "off"}),
    )
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        strip=False,
        max_length=settings.MAX_SYSTEM_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    temperature = forms.FloatField(
        label="Temperature",
        required=False,
        min_value=0,
        max_value=2,
        help_text="0–2; blank to leave it to the model. Claude accepts 0–1.",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    # Its upper bound is the operator's and the model's (limits.output_caps_problems).
    max_tokens = forms.IntegerField(
        label="Max tokens",
        required=False,
        min_value=1,
        help_text="Upper bound on the reply length; blank for the model's default.",
    )
    top_p = forms.FloatField(
        label="Top p",
        required=False,
        min_value=0,
        max_value=1,
        help_text="0–1; blank to leave it to the model.",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    stop = forms.CharField(
        label="Stop sequences",
        required=False,
        strip=False,
        help_text=f"One per line, at most {MAX_STOP_SEQUENCES}.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    extra_params = forms.CharField(
        label="Extra parameters (JSON)",
        required=False,
        help_text='A JSON object merged into the request body, e.g. {"enable_thinking": true}.',
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    send_anyway = forms.BooleanField(
        label="Send anyway",
        required=False,
        help_text="Skip the check against the model's schema; the upstream decides.",
    )

    def __init__(self, *args: Any, schema: Any = _RESOLVE, **kwargs: Any) -> None:
        """Adds a field per parameter of the model's schema (chat/schema_form.py)."""
        super().__init__(*args, **kwargs)
        # Bound data carries the form's prefix (compare columns); initial values do not.
        if self.is_bound:
            model_id = str(self.data.get(self.add_prefix("model")) or "").strip()
        else:
            model_id = str(self.initial.get("model") or "").strip()
        self.schema = catalogue.schema_for(model_id) if schema is _RESOLVE else schema
        # A caller that passes the schema (an import) wants no catalogue look-ups either.
        self.uses_catalogue = schema is _RESOLVE
        # Why the schema could not be loaded, or what of it could not be read.
        self.schema_note = catalogue.schema_note(model_id) if schema is _RESOLVE else ""
        self.params = schema_form.params_of(self.schema)
        self.schema_failed = False  # the schema check found problems: offer Send anyway
        for param in self.params:
            self.fields[param.field_name] = schema_form.make_field(param)
        if self.schema is not None:
            self._apply_schema_to_common_fields()

    def _apply_schema_to_common_fields(self) -> None:
        # The schema's range replaces the generic one (Claude: 0 to 1, GPT-4o: 0 to 2); the
        # check before sending enforces it, so "Send anyway" can go past it. The floor
        # stays: the database refuses a negative temperature.
        temperature = self.fields["temperature"]
        temperature.validators = [MinValueValidator(0)]
        temperature.widget.attrs.pop("max", None)
        for name in schema_form.COMMON:
            spec = self.schema.properties.get(name)
            if isinstance(spec, dict):
                self.fields[name].help_text = schema_form.help_text(spec)

    @property
    def keys_outside_schema(self) -> list[str]:
        """Extra keys (and a stop list) the model's schema does not list: sent, but flagged."""
        if self.schema is None:
            return []
        if self.is_bound:
            source = {
                name: self.data.get(self.add_prefix(name)) for name in ("extra_params", "stop")
            }
        else:
            source = self.initial
        try:
            extra = json.loads(source.get("extra_params") or "{}")
        except (ValueError, RecursionError):
            return []
        keys = set(extra) if isinstance(extra, dict) else set()
        if str(source.get("stop") or "").strip():
            keys.add("stop")
        return sorted(key for key in keys if key not in self.schema.properties)

    @property
    def schema_fields(self) -> list[forms.BoundField]:
        return [self[param.field_name] for param in self.params]

    @classmethod
    def initial_for(cls, conversation: Conversation) -> dict[str, Any]:
        params = schema_form.params_of(catalogue.schema_for(conversation.model))
        fields, free = schema_form.split_stored(params, conversation.extra_params)
        return {
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "temperature": conversation.temperature,
            "max_tokens": conversation.max_tokens,
            "top_p": conversation.top_p,
            "stop": "\n".join(conversation.stop),
            "extra_params": json.dumps(free, indent=2) if free else "",
            **fields,
        }

    def clean(self) -> dict[str, Any]:
        """Merge the schema fields into extra_params, then check the body against the schema."""
        cleaned = super().clean()
        # Other fields' errors (an empty message box) don't stop the merge: Save parameters
        # and Save as preset use this form without a message.
        set_fields = {
            param.name: cleaned[param.field_name]
            for param in self.params
            if cleaned.get(param.field_name) is not None
        }
        free = cleaned.get("extra_params") if "extra_params" not in self.errors else None
        if free is not None and not any(p.field_name in self.errors for p in self.params):
            cleaned["extra_params"] = {**set_fields, **free}
        if self.schema is not None and not cleaned.get("send_anyway"):
            # Whatever could be read is checked, so every problem shows in one round.
            self._check_schema(cleaned, set_fields, free or {})
        self._check_output_caps(cleaned, set_fields, free or {})
        return cleaned

    def _check_output_caps(
        self, cleaned: dict[str, Any], set_fields: dict[str, Any], free: dict[str, Any]
    ) -> None:
        """Replies per call and tokens per reply, on the field that set them."""
        model = cleaned.get("model") or ""
        sources = [
            ({"max_tokens": cleaned.get("max_tokens")}, lambda name: "max_tokens"),
            (set_fields, lambda name: schema_form.FIELD_PREFIX + name),
            (free, lambda name: "extra_params"),
        ]
        for values, field_of in sources:
            problems = limits.output_caps_problems(
                model=model, values=values, use_catalogue=self.uses_catalogue
            )
            for name, problem in problems.items():
                self.add_error(field_of(name), problem)

    def _check_schema(
        self, cleaned: dict[str, Any], set_fields: dict[str, Any], free: dict[str, Any]
    ) -> None:
        properties = self.schema.properties
        sent = [(name, cleaned.get(name), name) for name in schema_form.COMMON]
        sent += [
            (name, value, schema_form.FIELD_PREFIX + name) for name, value in set_fields.items()
        ]
        sent += [(name, value, "extra_params") for name, value in free.items()]
        for name, value, field in sent:
            if value is None or value == [] or name not in properties:
                continue
            for problem in schema_form.check(value, properties[name], name):
                self.schema_failed = True
                self.add_error(
                    field, f"{problem} Fix it, or tick Send anyway to let the upstream decide."
                )
        # A tool_choice naming a function that is not sent (unless the tools could not be read).
        unread = {"extra_params", schema_form.FIELD_PREFIX + "tools"} & set(self.errors)
        if not unread and (problem := tools_editor.choice_problem({**set_fields, **free})):
            self.schema_failed = True
            field = (
                "extra_params"
                if "tool_choice" in free
                else schema_form.FIELD_PREFIX + "tool_choice"
            )
            self.add_error(
                field, f"{problem} Fix it, or tick Send anyway to let the upstream decide."
            )

    def clean_model(self) -> str:
        return self.cleaned_data["model"].strip()

    def clean_stop(self) -> list[str]:
        lines = [line for line in self.cleaned_data["stop"].splitlines() if line.strip()]
        if len(lines) > MAX_STOP_SEQUENCES:
            raise forms.ValidationError(
                f"At most {MAX_STOP_SEQUENCES} stop sequences; you gave {len(lines)}."
            )
        if any(len(line) > MAX_STOP_SEQUENCE_CHARS for line in lines):
            raise forms.ValidationError(
                f"Each stop sequence can be at most {MAX_STOP_SEQUENCE_CHARS} characters."
            )
        return lines

    def clean_extra_params(self) -> dict[str, Any]:
        text = self.cleaned_data["extra_params"].strip()
        if not text:
            return {}
        value = schema_form.parse_json(
            text, name="Extra parameters", max_bytes=settings.MAX_EXTRA_PARAMS_BYTES
        )
        if not isinstance(value, dict):
            raise forms.ValidationError(
                'Extra parameters must be a JSON object, like {"top_k": 40}.'
            )
        for key, reason in RESERVED_KEYS.items():
            if key in value:
                raise forms.ValidationError(f'"{key}" cannot be set here. {reason}')
        return value


class MessageForm(forms.Form):
    """A message and the token that makes one submit one generation (edit uses it alone)."""

    content = forms.CharField(
        label="Message",
        strip=False,
        max_length=settings.MAX_MESSAGE_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "autofocus": True}),
    )
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Write a message first.")
        return content


class ShareForm(forms.Form):
    """Options for a share link: how long it lives, whether it shows the raw calls, and
    whether those show the upstream's response headers (off unless chosen)."""

    EXPIRY_CHOICES = {
        "": "Never expires",
        "1h": "Expires in 1 hour",
        "1d": "Expires in 1 day",
        "7d": "Expires in 7 days",
        "30d": "Expires in 30 days",
    }
    EXPIRY_DURATIONS = {
        "1h": timedelta(hours=1),
        "1d": timedelta(days=1),
        "7d": timedelta(days=7),
        "30d": timedelta(days=30),
    }

    label_suffix = ""
    expires_in = forms.ChoiceField(label="Expiry", choices=EXPIRY_CHOICES, required=False)
    show_inspector = forms.BooleanField(
        label="Show the raw JSON and Get code", required=False, initial=True
    )
    show_response_headers = forms.BooleanField(
        label="With the upstream's response headers", required=False, initial=False
    )

    def clean_expires_in(self) -> timedelta | None:
        return self.EXPIRY_DURATIONS.get(self.cleaned_data["expires_in"])


class ShareSettingsForm(ShareForm):
    """The same options for an existing link, where the expiry may be left as it is."""

    EXPIRY_CHOICES = {"keep": "Keep the current expiry", **ShareForm.EXPIRY_CHOICES}
    expires_in = forms.ChoiceField(label="Expiry", choices=EXPIRY_CHOICES, required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        cleaned["keep_expiry"] = self.data.get("expires_in", "keep") == "keep"
        return cleaned


class ImportForm(forms.Form):
    label_suffix = ""
    file = forms.FileField(
        label="Export file (JSON)",
        help_text=(
            "A file made by Export, or a chat completions request body. It becomes new "
            "conversations in your account."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
    )

    def __init__(self, *args: Any, upload_too_large: bool = False, **kwargs: Any) -> None:
        """`upload_too_large`: the upload was stopped at the limit (no file arrived)."""
        super().__init__(*args, **kwargs)
        self.upload_too_large = upload_too_large
        if upload_too_large:
            self.fields["file"].required = False

    def clean_file(self) -> bytes:
        upload = self.cleaned_data["file"]
        if self.upload_too_large or upload.size > settings.MAX_IMPORT_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {filesizeformat(settings.MAX_IMPORT_BYTES)}, the "
                "largest file this Playground imports. Nothing was imported."
            )
        return upload.read()


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one input; cleans to a list (empty when none was chosen)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


ROLE_LABELS = {
    "user": "User",
    "assistant": "Assistant (a reply you write: few-shot, or a prefill to continue)",
    "system": "System",
    "developer": "Developer",
}


class ChatForm(MessageForm, ParametersForm):
    """The message box plus the parameter panel: one submit, one generation.

    The message may be of any role the model's schema allows (tool results have a
    form of their own), with files attached. "Add" (add_only) puts it in the
    conversation without asking the model. Raw request mode (the "Send raw body"
    button posts use_raw): the raw body is the request, its new messages are shown,
    and the panel takes what maps.
    """

    role = forms.ChoiceField(label="Role", choices=ROLE_LABELS, initial="user", required=False)
    attachments = MultipleFileField(
        label="Attach files",
        required=False,
        help_text=(
            f"{attachments.ACCEPTED}; up to {filesizeformat(settings.MAX_ATTACHMENT_BYTES)} each, "
            f"{settings.MAX_ATTACHMENTS_PER_MESSAGE} per message."
        ),
        widget=MultipleFileInput(attrs={"accept": attachments.ACCEPT_ATTRIBUTE}),
    )
    add_only = forms.BooleanField(required=False)  # set by the "Add without sending" button
    use_raw = forms.BooleanField(required=False)  # set by the "Send raw body" button
    raw_body = forms.CharField(
        label="Raw request body (JSON)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "raw-body"}),
    )

    field_order = ["content", "role", "attachments"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In raw mode the messages are the raw body's; files alone make a message too.
        self.fields["content"].required = not (self.data.get("use_raw") or self.files)
        roles = wire.dialect_for(self.schema).roles
        self.fields["role"].choices = [
            (role, label) for role, label in ROLE_LABELS.items() if role in roles or role == "user"
        ]

    def clean_content(self) -> str:
        if self.data.get("use_raw") or self.files.getlist("attachments"):
            return self.cleaned_data["content"]
        return super().clean_content()

    def clean_role(self) -> str:
        return self.cleaned_data.get("role") or "user"

    def clean_attachments(self) -> list:
        """The files read and checked (type from their bytes, the size limits)."""
        try:
            return attachments.check_files(self.cleaned_data.get("attachments") or [])
        except forms.ValidationError as error:
            raise forms.ValidationError(
                [*error.messages, "Your message is kept; choose the files again."]
            ) from None

    def clean(self) -> dict[str, Any]:
        """In raw mode the body is the request; the panel takes what maps from it."""
        if not self.data.get("use_raw"):
            return super().clean()
        cleaned = self.cleaned_data
        text = cleaned.get("raw_body") or ""
        try:
            body = raw_request.parse(text)
        except forms.ValidationError as error:
            self.add_error("raw_body", error)
            return cleaned
        cleaned["raw_request"] = body
        cleaned["raw_text"] = text
        cleaned.update(raw_request.to_parameters(body, cleaned))
        return cleaned


class ToolResultsForm(forms.Form):
    """The results of a reply's tool calls, one box each, written by the user."""

    prefix = "tools"
    # Stored with a 2-character prefix in a 64-character column.
    idempotency_key = forms.CharField(max_length=62, widget=forms.HiddenInput)

    def __init__(self, *args: Any, cards: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cards = cards
        for index, card in enumerate(cards):
            self.fields[f"result_{index}"] = forms.CharField(
                label=f"Result of {card.name}",
                help_text=f"Sent as a tool message for call {card.call_id}.",
                strip=False,
                max_length=settings.MAX_MESSAGE_CHARS,
                widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
            )

    def results(self) -> list[tuple[str, str]]:
        """(tool call id, result) for each call, in the reply's order."""
        return [
            (card.call_id, self.cleaned_data[f"result_{index}"])
            for index, card in enumerate(self.cards)
        ]


class RegenerateForm(ParametersForm):
    """Regenerate posts the chat form: the panel's parameters and its idempotency token."""

    # Stored with a 2-character prefix in a 64-character column.
    idempotency_key = forms.CharField(max_length=62, widget=forms.HiddenInput)


class EditForm(MessageForm):
    """Edit and resend a user message; the same limits as the message box."""

    prefix = "edit"
    content = forms.CharField(
        label="Edited message",
        strip=False,
        max_length=settings.MAX_MESSAGE_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class CompareColumnForm(ParametersForm):
    """One column of a compare run; a column with no model is left out."""

    use_required_attribute = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].required = False
        self.fields["model"].help_text = "Leave blank to leave this column out."

    def is_used(self) -> bool:
        return bool(self.cleaned_data.get("model"))


class CompareForm(MessageForm):
    """The prompt every column answers; the columns are CompareColumnForms."""

    # Stored with a 2-character prefix in a 64-character column.
    idempotency_key = forms.CharField(max_length=62, widget=forms.HiddenInput)

    content = forms.CharField(
        label="Prompt",
        strip=False,
        max_length=settings.MAX_MESSAGE_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "autofocus": True}),
    )


def compare_column_forms(
    data: Any = None, *, initial: list[dict] | None = None
) -> list[CompareColumnForm]:
    """Four column forms, prefixed column-1 to column-4."""
    initial = initial or []
    return [
        CompareColumnForm(
            data,
            prefix=f"column-{number}",
            initial=initial[number - 1] if number <= len(initial) else None,
        )
        for number in range(1, CompareColumn.MAX_COLUMNS + 1)
    ]


class PresetNameForm(forms.Form):
    preset_name = forms.CharField(label="Preset name", max_length=100)

    def clean_preset_name(self) -> str:
        name = self.cleaned_data["preset_name"].strip()
        if not name:
            raise forms.ValidationError("Give the preset a name.")
        return name


class RenameForm(forms.Form):
    label_suffix = ""
    title = forms.CharField(label="Title", max_length=200)
