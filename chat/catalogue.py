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
and otherwise from the provider's documents bundled in chat/schemas/.
"""

import hashlib
import json
import logging
import threading
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

CATALOGUE_KEY = "catalogue:v2"
REFRESH_LOCK_KEY = "catalogue:refreshing"
SCHEMA_KEY = "schema:v1:"
# After a failure with no good copy, try again this soon rather than hourly.
RETRY_UNREACHABLE_SECONDS = 60
SCHEMA_FAILURE_SECONDS = 60
BUNDLED_SCHEMAS = Path(__file__).resolve().parent / "schemas"
CHAT_PATH_SUFFIX = "/chat/completions"

# The last background refresh started by this process (tests join it).
refresh_thread: threading.Thread | None = None


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
        _refresh_in_background()
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


def _refresh_in_background() -> None:
    global refresh_thread
    # One refresh at a time (per cache): the lock expires on its own if a thread dies.
    if not cache.add(REFRESH_LOCK_KEY, True, 120):
        return

    def run() -> None:
        try:
            catalogue_refresh()
        finally:
            cache.delete(REFRESH_LOCK_KEY)

    refresh_thread = threading.Thread(target=run, name="catalogue-refresh", daemon=True)
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


@dataclass(frozen=True)
class ModelSchema:
    """The JSON schema of a model's chat-completions request body."""

    model_id: str
    properties: dict[str, Any]
    required: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)  # the document's own model enum
    source: str = "upstream"  # "upstream" (its docsJson) or "bundled" (chat/schemas/)


def schema_for(model_id: str) -> ModelSchema | None:
    """The request schema of a model: from its docsJson link, else a bundled document."""
    if not model_id:
        return None
    model = catalogue_model(model_id)
    names = {model_id}
    if model is not None:
        names |= {model["id"], *model.get("aliases", [])}
    if model and model.get("docs_json"):
        parsed = _fetched_schema(model["docs_json"])
        if parsed is not None:
            return ModelSchema(model_id=model_id, source="upstream", **parsed)
    for aliases, parsed in bundled_schemas():
        if names & aliases:
            return ModelSchema(model_id=model_id, source="bundled", **parsed)
    return None


def _fetched_schema(url: str) -> dict[str, Any] | None:
    """{properties, required} from a docsJson document, cached; None when unavailable."""
    key = SCHEMA_KEY + hashlib.sha256(url.encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached or None  # {} marks a recent failure
    try:
        parsed = request_schema(client.fetch_json_document(url))
    except client.UpstreamError as error:
        logger.warning("Model schema unavailable at %s: %s", url, error.message)
        parsed = None
    if parsed is None:
        cache.set(key, {}, SCHEMA_FAILURE_SECONDS)
        return None
    cache.set(key, parsed, settings.UPSTREAM_MODELS_CACHE_SECONDS)
    return parsed


@memoize
def bundled_schemas() -> list[tuple[frozenset[str], dict[str, Any]]]:
    """The provider's documents shipped in chat/schemas/: (model ids, parsed schema)."""
    result = []
    for path in sorted(BUNDLED_SCHEMAS.glob("*.openapi.json")):
        parsed = request_schema(json.loads(path.read_text()))
        if parsed is not None:
            result.append((frozenset(parsed["model_ids"]), parsed))
    return result


def request_schema(document: dict[str, Any]) -> dict[str, Any] | None:
    """{properties, required, model_ids} of the chat-completions body in an OpenAPI document.

    `messages` is left out: the app builds it, and it is most of the document.
    """
    for path, operations in (document.get("paths") or {}).items():
        if not path.rstrip("/").endswith(CHAT_PATH_SUFFIX) or not isinstance(operations, dict):
            continue
        try:
            body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
        except (KeyError, TypeError):
            continue
        if isinstance(body, dict) and "$ref" in body:
            body = resolve_refs(body, document)
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            continue
        properties = {
            name: resolve_refs(value, document)
            for name, value in body["properties"].items()
            if name != "messages"
        }
        model = properties.pop("model", {})
        return {
            "properties": properties,
            "required": [name for name in body.get("required") or [] if name in properties],
            "model_ids": [str(v) for v in model.get("enum") or []]
            if isinstance(model, dict)
            else [],
        }
    return None


def resolve_refs(node: Any, document: dict[str, Any], depth: int = 0) -> Any:
    """Inline local `$ref`s (`#/components/...`), with a depth guard against cycles."""
    if depth > 20:
        return {}
    if isinstance(node, list):
        return [resolve_refs(item, document, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = document
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return resolve_refs(target, document, depth + 1)
    return {key: resolve_refs(value, document, depth + 1) for key, value in node.items()}
