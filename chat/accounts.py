"""Accounts: who may sign up (SIGNUP_MODE), and one-time invitation links."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Invitation

CLOSED = (
    "Sign-up is closed on this server. Ask its operator for an account, "
    "then log in with the username and password they give you."
)
NEEDS_INVITATION = (
    "Sign-up on this server is by invitation: open the invitation link its operator "
    "gave you. Each link makes one account."
)
UNKNOWN = (
    "This invitation link is not valid. Check that you opened the whole link, "
    "or ask the operator for a new one."
)
USED = "This invitation link has already been used: each link makes one account."
EXPIRED = "This invitation link has expired. Ask the operator for a new one."


def invitation_create(*, expires_in: timedelta | None, note: str = "") -> Invitation:
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    return Invitation.objects.create(expires_at=expires_at, note=note[:200])


def signup_refusal(*, token: str) -> str | None:
    """Why this visitor may not sign up (with this invitation token), or None if they may."""
    if settings.SIGNUP_MODE == "open":
        return None
    if settings.SIGNUP_MODE != "invite":
        return CLOSED
    if not token:
        return NEEDS_INVITATION
    invitation = Invitation.objects.filter(token=token[:64]).first()
    if invitation is None:
        return UNKNOWN
    return {Invitation.State.USED: USED, Invitation.State.EXPIRED: EXPIRED}.get(invitation.state)


def user_sign_up(*, form: Any, token: str) -> Any:
    """Save the sign-up form's user; by invitation, use the invitation up in the same step.

    The invitation is claimed with one conditional UPDATE, so two sign-ups racing
    with one link make one account; the loser's form says why, nothing saved.
    """
    with transaction.atomic():
        if settings.SIGNUP_MODE == "open":
            return form.save()
        refusal = signup_refusal(token=token)
        if refusal is not None:
            raise ValidationError(refusal)
        now = timezone.now()
        claimed = (
            Invitation.objects.filter(token=token, used_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .update(used_at=now, updated=now)
        )
        if not claimed:
            raise ValidationError(USED)
        user = form.save()
        Invitation.objects.filter(token=token).update(used_by=user)
        return user
