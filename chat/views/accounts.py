"""Views for accounts: sign-up and a throttled log-in."""

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from .. import (
    accounts,
    limits,
)
from ..forms import (
    SignUpForm,
)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Sign up, as SIGNUP_MODE allows: anyone, an invitation's holder, or nobody.

    Each submit counts against the address's sign-up limit, checked before the
    form: a sign-up form must say when a username is taken, and the limit (and,
    by invitation, the link) keeps that from being a free way to list them.
    """
    token = (request.POST.get("invite") or request.GET.get("invite") or "").strip()
    context = {"next": _safe_next(request), "invite": token}
    refusal = accounts.signup_refusal(token=token)
    if refusal is not None:
        context["refusal"] = refusal
        return render(request, "registration/signup.html", context, status=403)
    if request.method != "POST":
        return render(request, "registration/signup.html", {**context, "form": SignUpForm()})
    try:
        limits.signup_take(request=request)
    except limits.Throttled as error:
        form = SignUpForm(initial={"username": request.POST.get("username", "")})
        return _throttled(request, "registration/signup.html", error, {**context, "form": form})
    form = SignUpForm(request.POST)
    if form.is_valid():
        try:
            user = accounts.user_sign_up(form=form, token=token)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            login(request, user)
            return redirect(context["next"] or "conversation_list")
    return render(request, "registration/signup.html", {**context, "form": form})


class LoginView(auth_views.LoginView):
    """Django's log-in, refused for a while (429) after too many failures.

    Failures count per username and per client address (chat/limits.py); once
    either is over its limit even the right password waits, or guessing would
    go on at full speed until it hit.
    """

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        try:
            limits.login_check(request=request, username=username)
        except limits.Throttled as error:
            # A fresh form: a bound one would check the password while rendering.
            form = self.get_form_class()(request, initial={"username": username})
            return _throttled(request, self.template_name, error, self.get_context_data(form=form))
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        limits.login_failed(request=self.request, username=self.request.POST.get("username", ""))
        return super().form_invalid(form)


def _throttled(
    request: HttpRequest, template: str, error: "limits.Throttled", context: dict
) -> HttpResponse:
    """The form again, empty but for what was typed (never the password), saying when."""
    response = render(request, template, {**context, "throttled": error.message}, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def _safe_next(request: HttpRequest) -> str:
    """Where to go after signing up: only ever a path on this site."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return next_url if allowed else ""
