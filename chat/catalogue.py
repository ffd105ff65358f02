"""The upstream's model catalogue and each model's request schema, cached.

The catalogue (`GET /models`) is kept in the cache with no expiry: it is the last
good copy. It is revalidated with `If-None-Match` at most once per
UPSTREAM_MODELS_CACHE_SECONDS, lazily: the first page that finds the copy due
starts a background thread and is served the copy it has (stale while
revalidate); only when there is no copy at all does a page wait for the fetch.
When the upstream is unreachable the last good copy stays in use and the page
says so; with no copy ever fetched, UPSTREAM_FALLBACK_MODELS is offered.

A model's OpenAPI document comes from the catalogue's `info.docsJson` link
(fetched through chat/client.py, only from the configured upstream's origin),
and otherwise from the provider's documents bundled in chat/schemas/. Each
document is kept the same way as the catalogue: the last good reading with no
expiry, revalidated in the background when due (a failed refresh keeps it, and
the panel says so), so only a model whose document was never read makes a page
or a send wait, and no longer than UPSTREAM_FETCH_SECONDS. A document that could
not be read at all is asked for again, in the background, after
SCHEMA_FAILURE_SECONDS.
"""

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache as memoize
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from . import client

logger = logging.getLogger(__name__)

CATALOGUE_KEY = "catalogue:v3"  # v3: entries validated (client.normalise_model)
REFRESH_LOCK_KEY = "catalogue:refreshing"
# v4: a FetchedSchema whose reading has the message shape (roles, part types) and
# Claude's tools and tool_choice under their own names.
SCHEMA_KEY = "schema:v4:"
SCHEMA_REFRESH_LOCK_KEY = "schema:refreshing:"
# A refresh that died without releasing its lock holds it no longer than this.
REFRESH_LOCK_SECONDS = 120
# After a failure with no good copy, try again this soon rather than hourly.
RETRY_UNREACHABLE_SECONDS = 60
SCHEMA_FAILURE_SECONDS = 60
BUNDLED_SCHEMAS = Path(__file__).resolve().parent / "schemas"
CHAT_PATH_SUFFIX = "/chat/completions"

# The background refreshes started by this process: the last one, and those still
# running (tests join them).
refresh_thread: threading.Thread | None = None
refresh_threads: list[threading.Thread] = []


@dataclass(frozen=True)
class Catalogue:
    models: list[dict[str, Any]]
    live: bool  # False: never fetched, these are the configured fallbacks
    fetched_at: datetime | None = None  # when this copy was last confirmed by the upstream
    checked_at: datetime | None = None  # when we last asked
    etag: str | None = None
    error: str = ""  # why the last refresh failed, when it did

    @property
    def stale(self) -> bool:
        """A good copy is shown, but the upstream could not be reached to refresh it."""
        return self.live and bool(self.error)

    def find(self, model_id: str) -> dict[str, Any] | None:
        """The catalogue entry for a model id or any of its aliases."""
        for model in self.models:
            if model["id"] == model_id or model_id in model.get("aliases", []):
                return model
        return None

    def groups(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Models grouped by developer (alphabetical), each group sorted by name."""
        by_developer: dict[str, list[dict[str, Any]]] = {}
        for model in self.models:
            by_developer.setdefault(model.get("developer") or "Other", []).append(model)
        return [
            (developer, sorted(models, key=lambda m: m["name"].lower()))
            for developer, models in sorted(by_developer.items(), key=lambda i: i[0].lower())
        ]


def catalogue_get() -> Catalogue:
    """The catalogue for a page: the cached copy, refreshed in the background when due."""
    catalogue = cache.get(CATALOGUE_KEY)
    if catalogue is None:
        return catalogue_refresh()
    if _is_due(catalogue):
        _refresh_in_background(REFRESH_LOCK_KEY, catalogue_refresh, "catalogue-refresh")
    return catalogue


def catalogue_refresh() -> Catalogue:
    """Ask the upstream now (with the cached ETag) and store the result."""
    previous: Catalogue | None = cache.get(CATALOGUE_KEY)
    now = timezone.now()
    etag = previous.etag if previous is not None and previous.live else None
    try:
        response = client.fetch_catalogue(etag=etag)
    except client.UpstreamError as error:
        logger.warning("Model list unavailable: %s", error.message)
        if previous is not None and previous.live:
            catalogue = _replace(previous, checked_at=now, error=error.message)
        else:
            catalogue = Catalogue(
                models=_fallback_models(), live=False, checked_at=now, error=error.message
            )
    else:
        if response.models is None and previous is not None:  # 304: our copy is current
            catalogue = _replace(previous, fetched_at=now, checked_at=now, error="")
        else:
            catalogue = Catalogue(
                models=_chat_first(response.models or []),
                live=True,
                fetched_at=now,
                checked_at=now,
                etag=response.etag,
            )
    cache.set(CATALOGUE_KEY, catalogue, None)
    return catalogue


def catalogue_model(model_id: str) -> dict[str, Any] | None:
    return catalogue_get().find(model_id)


def _is_due(catalogue: Catalogue) -> bool:
    interval = (
        settings.UPSTREAM_MODELS_CACHE_SECONDS if catalogue.live else RETRY_UNREACHABLE_SECONDS
    )
    checked = catalogue.checked_at
    return checked is None or (timezone.now() - checked).total_seconds() >= interval


def _refresh_in_background(lock_key: str, refresh: Callable[[], object], name: str) -> None:
    """Run `refresh` in a thread of its own, unless one holding `lock_key` runs already.

    The page that found the copy due is served that copy meanwhile (stale while
    revalidate). One refresh per key at a time (per cache): the lock expires on its
    own if a thread dies.
    """
    global refresh_thread
    if not cache.add(lock_key, True, REFRESH_LOCK_SECONDS):
        return

    def run() -> None:
        try:
            refresh()
        finally:
            cache.delete(lock_key)

    refresh_thread = threading.Thread(target=run, name=name, daemon=True)
    refresh_threads[:] = [thread for thread in refresh_threads if thread.is_alive()]
    refresh_threads.append(refresh_thread)
    refresh_thread.start()


def _replace(catalogue: Catalogue, **changes: Any) -> Catalogue:
    return Catalogue(**{**catalogue.__dict__, **changes})


def _chat_first(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(models, key=lambda m: (m.get("developer", "").lower(), m["name"].lower()))


def _fallback_models() -> list[dict[str, Any]]:
    return [
        client.normalise_model({"id": model_id}) for model_id in settings.UPSTREAM_FALLBACK_MODELS
    ]


# --- Request schemas ---------------------------------------------------------

# What is kept of a schema document: the panel shows it on every page of the model,
# and the cache holds it. A document that goes past these is read in part.
MAX_SCHEMA_PROPERTIES = 100  # per object
MAX_SCHEMA_DEPTH = 16  # nested schemas, $ref hops included
MAX_SCHEMA_NODES = 5_000  # schemas kept from one document: $refs can fan out exponentially
MAX_ENUM_VALUES = 100
MAX_BRANCHES = 20  # anyOf / oneOf
MAX_NAME_CHARS = 100  # a property name (it becomes a form field's name)
MAX_VALUE_CHARS = 200  # an enum value, or a default as JSON
MAX_DESCRIPTION_CHARS = 1_000
MAX_PROBLEMS_SHOWN = 5
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


@dataclass(frozen=True)
class FetchedSchema:
    """What is cached of one docsJson document: its last good reading, and the last try."""

    parsed: dict[str, Any] | None  # {properties, required, ...}; None: never read
    checked_at: datetime  # when we last asked
    fetched_at: datetime | None = None  # when `parsed` was read
    error: str = ""  # why the last try failed, when it did (shown on a page)


@dataclass(frozen=True)
class ModelSchema:
    """The JSON schema of a model's chat-completions request body."""

    model_id: str
    properties: dict[str, Any]
    required: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)  # the document's own model enum
    # The roles and content-part types its `messages` names (empty: not said).
    roles: list[str] = field(default_factory=list)
    part_types: list[str] = field(default_factory=list)
    source: str = "upstream"  # "upstream" (its docsJson) or "bundled" (chat/schemas/)
    problems: list[str] = field(default_factory=list)  # what could not be read, left out


def schema_for(model_id: str) -> ModelSchema | None:
    """The request schema of a model: from its docsJson link, else a bundled document."""
    if not model_id:
        return None
    model = catalogue_model(model_id)
    if model and model.get("docs_json"):
        parsed = _fetched_schema(model["docs_json"]).parsed
        if parsed is not None:
            return ModelSchema(model_id=model_id, source="upstream", **parsed)
    bundled = _bundled_schema(model_id, model)
    if bundled is not None:
        return ModelSchema(model_id=model_id, source="bundled", **bundled)
    return None


def schema_note(model_id: str) -> str:
    """What a person should know about the model's schema: why it could not be loaded,
    or which parts of it could not be read; "" when there is nothing to say."""
    model = catalogue_model(model_id) if model_id else None
    if not model or not model.get("docs_json"):
        return ""
    fetched: FetchedSchema | None = cache.get(_schema_key(model["docs_json"]))
    if fetched is None:  # schema_for has not fetched it (yet)
        return ""
    if fetched.parsed is None:
        instead = (
            "The copy bundled with the app is used instead."
            if _bundled_schema(model_id, model) is not None
            else "The panel shows the common parameters only."
        )
        return (
            f"This model's schema could not be loaded from the upstream: {fetched.error} {instead}"
        )
    notes = []
    if fetched.error:
        notes.append(
            "This model's schema could not be refreshed from the upstream: "
            f"{fetched.error} The copy read {fetched.fetched_at:%Y-%m-%d %H:%M} UTC is used."
        )
    problems = fetched.parsed.get("problems") or []
    if problems:
        shown = ", ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        notes.append(
            "Parts of this model's schema could not be read and were left out: "
            f"{shown}{f' and {more} more' if more > 0 else ''}."
        )
    return " ".join(notes)


def _bundled_schema(model_id: str, model: dict[str, Any] | None) -> dict[str, Any] | None:
    names = {model_id}
    if model is not None:
        names |= {model["id"], *model.get("aliases", [])}
    for aliases, parsed in bundled_schemas():
        if names & aliases:
            return parsed
    return None


def _schema_key(url: str) -> str:
    return SCHEMA_KEY + hashlib.sha256(url.encode()).hexdigest()


def _fetched_schema(url: str) -> FetchedSchema:
    """A docsJson document as cached, refreshed in the background when due; fetched
    now (bounded by UPSTREAM_FETCH_SECONDS) only when it was never asked for."""
    fetched: FetchedSchema | None = cache.get(_schema_key(url))
    if fetched is None:
        return schema_refresh(url)
    interval = (
        settings.UPSTREAM_MODELS_CACHE_SECONDS
        if fetched.parsed is not None
        else SCHEMA_FAILURE_SECONDS
    )
    if (timezone.now() - fetched.checked_at).total_seconds() >= interval:
        lock = SCHEMA_REFRESH_LOCK_KEY + _schema_key(url).removeprefix(SCHEMA_KEY)
        _refresh_in_background(lock, lambda: schema_refresh(url), "schema-refresh")
    return fetched


def schema_refresh(url: str) -> FetchedSchema:
    """Ask the upstream for a docsJson document now and store what it gives; when that
    fails, the last good reading is kept, with the reason."""
    parsed = None
    try:
        parsed = request_schema(client.fetch_json_document(url))
    except client.UpstreamError as error:
        logger.warning("Model schema unavailable at %s: %s", url, error.message)
        error_text = _shown(error.message)
    else:
        error_text = (
            "" if parsed is not None else "It has no chat-completions request body we can read."
        )
    # Taken after the fetch: a slow answer must not leave the copy due again at once.
    now = timezone.now()
    key = _schema_key(url)
    previous: FetchedSchema | None = cache.get(key)
    if parsed is not None:
        fetched = FetchedSchema(parsed=parsed, checked_at=now, fetched_at=now)
    elif previous is not None and previous.parsed is not None:
        fetched = FetchedSchema(
            parsed=previous.parsed,
            checked_at=now,
            fetched_at=previous.fetched_at,
            error=error_text,
        )
    else:
        fetched = FetchedSchema(parsed=None, checked_at=now, error=error_text)
    cache.set(key, fetched, None)
    return fetched


@memoize
def bundled_schemas() -> list[tuple[frozenset[str], dict[str, Any]]]:
    """The provider's documents shipped in chat/schemas/: (model ids, parsed schema)."""
    result = []
    for path in sorted(BUNDLED_SCHEMAS.glob("*.openapi.json")):
        parsed = request_schema(json.loads(path.read_text()))
        if parsed is not None:
            result.append((frozenset(parsed["model_ids"]), parsed))
    return result


def request_schema(document: Any) -> dict[str, Any] | None:
    """{properties, required, model_ids, problems} of the chat-completions body in an
    OpenAPI document; None when it has none.

    The document is untrusted: only the keywords the panel and the check use are kept,
    each only when its value has the right type and size (resolve_refs); what is left
    out is listed in `problems`. `messages` is left out too: the app builds it, and it
    is most of the document.
    """
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        return None
    for path, operations in paths.items():
        if not isinstance(path, str) or not path.rstrip("/").endswith(CHAT_PATH_SUFFIX):
            continue
        reader = SchemaReader(document)
        request_body = reader.follow(_dig(operations, "post", "requestBody"), "requestBody")
        body = reader.follow(_dig(request_body, "content", "application/json", "schema"), "body")
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            continue
        properties = reader.properties(
            {k: v for k, v in body["properties"].items() if k != "messages"}, "", depth=1
        )
        model = properties.pop("model", {})
        properties = _tools_in_place(properties)
        roles, part_types = _message_shape(reader, body["properties"].get("messages"))
        required = body.get("required")
        if required is not None and not isinstance(required, list):
            reader.problem("required (not a list)")
            required = []
        return {
            "properties": properties,
            "required": [n for n in required or [] if isinstance(n, str) and n in properties],
            "model_ids": [v for v in model.get("enum", []) if isinstance(v, str)],
            "roles": roles,
            "part_types": part_types,
            "problems": reader.problems,
        }
    return None


def _tools_in_place(properties: dict[str, Any]) -> dict[str, Any]:
    """`tools` and `tool_choice` each described under its own name, where a document has
    them swapped: the provider's Claude document describes a tool definition ({name,
    description, input_schema}) as `tool_choice` and Anthropic's tool_choice forms
    ({"type": "auto" | "any" | "tool" | "none"}) as the items of `tools`. Each keeps its
    own description, which is right; only the shapes move.

    Reference: https://docs.anthropic.com/en/api/messages (tools, tool_choice)
    """
    tools, choice = properties.get("tools"), properties.get("tool_choice")
    if not isinstance(tools, dict) or not isinstance(choice, dict):
        return properties
    items = tools.get("items")
    choice_properties = choice.get("properties")
    if not (
        tools.get("type") == "array"
        and isinstance(items, dict)
        and isinstance(items.get("anyOf"), list)
        and "properties" not in items
        and isinstance(choice_properties, dict)
        and "input_schema" in choice_properties
    ):
        return properties
    definition = {key: value for key, value in choice.items() if key != "description"}
    forms = {key: value for key, value in items.items() if key != "description"}
    if "description" in choice:
        forms["description"] = choice["description"]
    return {**properties, "tools": {**tools, "items": definition}, "tool_choice": forms}


MAX_SHAPE_NODES = 4000
MAX_NAME_CHARS = 40


def _message_shape(reader: "SchemaReader", messages: Any) -> tuple[list[str], list[str]]:
    """The roles and content-part types the `messages` schema names (its `role` and
    `type` enums), for sending each message in the shape the model expects.

    A bounded walk (MAX_SHAPE_NODES, $refs followed by the reader's rules): the
    schema is untrusted, and only these two lists of short names are kept.
    """
    roles: list[str] = []
    part_types: list[str] = []
    stack, seen = [(messages, 0)], 0
    while stack and seen < MAX_SHAPE_NODES:
        node, depth = stack.pop()
        seen += 1
        node = reader.follow(node, "messages")
        if isinstance(node, list):
            stack.extend((item, depth + 1) for item in node[:64] if depth < MAX_SCHEMA_DEPTH)
            continue
        if not isinstance(node, dict) or depth > MAX_SCHEMA_DEPTH:
            continue
        properties = node.get("properties")
        if isinstance(properties, dict):
            for key, found in (("role", roles), ("type", part_types)):
                spec = reader.follow(properties.get(key), "messages")
                enum = spec.get("enum") if isinstance(spec, dict) else None
                for value in enum if isinstance(enum, list) else []:
                    fits = isinstance(value, str) and len(value) <= MAX_NAME_CHARS
                    if fits and value not in found and len(found) < 64:
                        found.append(value)
        stack.extend(
            (value, depth + 1)
            for key, value in list(node.items())[:64]
            if key not in ("description", "enum", "example", "examples", "default")
        )
    return roles, part_types


def _dig(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


class SchemaReader:
    """Reads schemas out of one untrusted document, within the bounds above.

    Each keyword's value is kept only when it has the type the JSON schema (OpenAPI
    3.0) subset gives it; the rest is noted in `problems` by its path. Recursion is
    bounded by MAX_SCHEMA_DEPTH and the whole read by MAX_SCHEMA_NODES, so neither a
    deep document nor a $ref cycle or fan-out can make it run long.
    """

    def __init__(self, document: Any) -> None:
        self.document = document
        self.nodes = 0
        self.problems: list[str] = []

    def problem(self, what: str) -> None:
        if len(self.problems) < MAX_SCHEMA_PROPERTIES:
            self.problems.append(what)

    def follow(self, node: Any, path: str, depth: int = 0) -> Any:
        """`node`, or what its local `$ref` (chain) points at."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            depth += 1
            if not isinstance(ref, str) or not ref.startswith("#/") or depth > MAX_SCHEMA_DEPTH:
                self.problem(f"{path or 'a schema'} (a $ref that cannot be followed)")
                return {}
            node = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                node = node.get(part) if isinstance(node, dict) else None
        return node

    def schema(self, node: Any, path: str, *, depth: int) -> dict[str, Any]:
        node = self.follow(node, path)
        label = path or "the schema"
        if not isinstance(node, dict):
            if node is not None:
                self.problem(f"{label} (not an object)")
            return {}
        if depth > MAX_SCHEMA_DEPTH:
            self.problem(f"{label} (nested too deeply)")
            return {}
        if self.nodes >= MAX_SCHEMA_NODES:
            self.problem(f"{label} (the schema is too large)")
            return {}
        self.nodes += 1
        spec: dict[str, Any] = {}
        for key, value in node.items():
            read = self.KEYWORDS.get(key)
            if read is None:
                continue  # a keyword neither the panel nor the check uses
            kept = read(self, value, f"{path}.{key}" if path else key, depth)
            if kept is _LEFT_OUT:
                self.problem(f"{path}.{key}" if path else key)
            else:
                spec[key] = kept
        if isinstance(spec.get("type"), list):
            _narrow_type(spec)
        return spec

    def properties(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, dict):
            return _LEFT_OUT
        kept = {}
        for name, spec in value.items():
            if len(kept) >= MAX_SCHEMA_PROPERTIES:
                self.problem(f"{len(value) - len(kept)} properties past the first {len(kept)}")
                break
            shown = f"{path}.{_shown(name)}" if path else _shown(name)
            if len(name) > MAX_NAME_CHARS or client.UNSAFE_TEXT.search(name):
                self.problem(f"{shown[:60]} (an unusable name)")
                continue
            kept[name] = self.schema(spec, shown, depth=depth + 1)
        return kept

    def _type(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str) and value in JSON_TYPES:
            return value
        if (
            isinstance(value, list)
            and 0 < len(value) <= len(JSON_TYPES)
            and all(isinstance(v, str) and v in JSON_TYPES for v in value)
        ):
            return list(value)
        return _LEFT_OUT

    def _enum(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, list) or len(value) > MAX_ENUM_VALUES:
            return _LEFT_OUT
        if not all(_small_scalar(v) for v in value):
            return _LEFT_OUT
        return list(value)

    def _number(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _LEFT_OUT
        return value if math.isfinite(value) else _LEFT_OUT

    def _count(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return _LEFT_OUT
        return value

    def _flag(self, value: Any, path: str, depth: int) -> Any:
        return value if isinstance(value, bool) else _LEFT_OUT

    def _default(self, value: Any, path: str, depth: int) -> Any:
        # Shown as JSON in the help text (json.dumps escapes surrogates and controls).
        try:
            text = json.dumps(value, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            return _LEFT_OUT
        return value if len(text) <= MAX_VALUE_CHARS else _LEFT_OUT

    def _description(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, str):
            return _LEFT_OUT
        return " ".join(client.UNSAFE_TEXT.sub(" ", value[: MAX_DESCRIPTION_CHARS * 2]).split())[
            :MAX_DESCRIPTION_CHARS
        ]

    def _names(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, list):
            return _LEFT_OUT
        return [v for v in value[:MAX_SCHEMA_PROPERTIES] if isinstance(v, str)]

    def _subschema(self, value: Any, path: str, depth: int) -> Any:
        return self.schema(value, path, depth=depth + 1) if isinstance(value, dict) else _LEFT_OUT

    def _additional(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, bool):
            return value
        return self._subschema(value, path, depth)

    def _branches(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, list):
            return _LEFT_OUT
        if len(value) > MAX_BRANCHES:
            self.problem(f"{path} (more than {MAX_BRANCHES} forms)")
        return [
            self.schema(branch, f"{path}[{index}]", depth=depth + 1)
            for index, branch in enumerate(value[:MAX_BRANCHES])
        ]

    KEYWORDS: dict[str, Any] = {
        "type": _type,
        "enum": _enum,
        "minimum": _number,
        "maximum": _number,
        "minLength": _count,
        "maxLength": _count,
        "minItems": _count,
        "maxItems": _count,
        "nullable": _flag,
        "default": _default,
        "description": _description,
        "properties": properties,
        "required": _names,
        "items": _subschema,
        "additionalProperties": _additional,
        "anyOf": _branches,
        "oneOf": _branches,
    }


_LEFT_OUT = object()


def _narrow_type(spec: dict[str, Any]) -> None:
    """A JSON-schema type list: ["integer", "null"] is OpenAPI 3.0's nullable integer;
    a list of several types is left to the JSON field and the upstream."""
    kinds = {kind for kind in spec["type"] if kind != "null"}
    nullable = "null" in spec["type"]
    if len(kinds) == 1:
        spec["type"] = kinds.pop()
        if nullable:
            spec["nullable"] = True
    else:
        del spec["type"]


def _small_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | int):
        return not isinstance(value, int) or abs(value) < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return (
        isinstance(value, str)
        and len(value) <= MAX_VALUE_CHARS
        and not client.UNSAFE_TEXT.search(value)
    )


def _shown(text: str) -> str:
    """Text from the upstream made safe to put on a page (no surrogates or controls)."""
    return client.UNSAFE_TEXT.sub("?", text)
