"""Filters for the model picker and usage figures."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def tokens_short(value: int | None) -> str:
    """128000 → "128k", 1048576 → "1M"; blank for unknown."""
    if not isinstance(value, int) or value <= 0:
        return ""
    if value >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if value >= 1_000:
        return f"{value / 1_000:.3g}k"
    return str(value)


@register.filter
def price_per_million(pricing: dict | None) -> str:
    """ "$2.50 / $10.00" per million input / output tokens, from per-token decimal strings."""
    if not pricing:
        return ""
    million = Decimal(1_000_000)
    return " / ".join(f"${Decimal(pricing[side]) * million:,.2f}" for side in ("input", "output"))


@register.filter
def usd(value: Decimal | str | None) -> str:
    """A cost with enough digits to show sub-cent amounts (exports carry it as a string)."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return ""
    return f"${amount:,.6f}".rstrip("0").rstrip(".") if amount else "$0"
