"""Tokens and cost: estimates from catalogue pricing, totals, and the usage page's figures."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import catalogue
from .models import ApiCall, Conversation

CHART_WIDTH = 600
CHART_HEIGHT = 160
CHART_LABEL_SPACE = 20


def cost_estimate(*, model: str, prompt_tokens: int | None, completion_tokens: int | None):
    """USD from the catalogue's per-token prices, or None when they are unknown."""
    if prompt_tokens is None and completion_tokens is None:
        return None
    entry = catalogue.catalogue_get().find(model) if model else None
    pricing = entry.get("pricing") if entry else None
    if not pricing:
        return None
    return Decimal(pricing["input"]) * (prompt_tokens or 0) + Decimal(pricing["output"]) * (
        completion_tokens or 0
    )


_TOTALS = {
    "calls": Count("id"),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "usd_spent": Sum("usd_spent"),
    "estimated_calls": Count("id", filter=Q(cost_estimated=True)),
}


def conversation_totals(*, conversation: Conversation) -> dict[str, Any]:
    """Calls, tokens and cost of every call this conversation made."""
    return ApiCall.objects.filter(conversation=conversation).aggregate(**_TOTALS)


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    day: date
    usd: Decimal
    tokens: int


@dataclass(frozen=True)
class UserUsage:
    days: list[dict[str, Any]]
    models: list[dict[str, Any]]
    totals: dict[str, Any]
    bars: list[Bar]
    chart_max_tokens: int


def user_usage(*, owner: Any, days: int = 30) -> UserUsage:
    """One user's calls, tokens and cost by day and by model, over the last `days` days."""
    since = timezone.now() - timedelta(days=days)
    calls = ApiCall.objects.filter(conversation__owner=owner, created__gte=since)
    by_day = list(
        calls.annotate(day=TruncDate("created")).values("day").annotate(**_TOTALS).order_by("day")
    )
    by_model = list(calls.values("model").annotate(**_TOTALS).order_by("-usd_spent", "model"))
    totals = calls.aggregate(**_TOTALS)
    bars, peak = _chart(by_day, days)
    return UserUsage(days=by_day, models=by_model, totals=totals, bars=bars, chart_max_tokens=peak)


def _chart(by_day: list[dict[str, Any]], days: int) -> tuple[list[Bar], int]:
    """Bar geometry for tokens per day, one slot per calendar day (empty days stay empty)."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = {row["day"]: row for row in by_day}
    tokens = {
        day: (rows[day]["prompt_tokens"] or 0) + (rows[day]["completion_tokens"] or 0)
        for day in rows
    }
    peak = max(tokens.values(), default=0)
    slot = CHART_WIDTH // days
    plot_height = CHART_HEIGHT - CHART_LABEL_SPACE
    bars = []
    for index in range(days):
        day = first + timedelta(days=index)
        if day not in rows or not peak:
            continue
        height = max(1, round(tokens[day] * plot_height / peak))
        bars.append(
            Bar(
                x=index * slot + 1,
                y=plot_height - height,
                width=max(1, slot - 2),
                height=height,
                day=day,
                usd=rows[day]["usd_spent"] or Decimal(0),
                tokens=tokens[day],
            )
        )
    return bars, peak
