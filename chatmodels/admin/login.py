"""The admin login, throttled: at most CHATMODELS_LOGIN_ATTEMPTS_PER_MINUTE attempts from one
client address and for one username (counted in the limits store every worker shares), so that
guessing passwords is slow and a burst of attempts cannot take the server's CPU (each attempt
hashes a password). A refused attempt is not checked at all: it gets the login page again, with
a message saying when to retry, and status 429.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from chatmodels import clients


def throttled(login: Callable[..., HttpResponse], site) -> Callable[..., HttpResponse]:
    """`login` (an AdminSite's login view) behind the throttle."""

    def view(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method == "POST":
            username = str(request.POST.get("username", ""))
            wait, which = clients.login_wait(request.META, username)
            if wait:
                return _refused(request, site, math.ceil(wait), which)
        return login(request, extra_context)

    return view


def _refused(request: HttpRequest, site, wait: int, which: str) -> HttpResponse:
    form = AdminAuthenticationForm(request, initial={"username": request.POST.get("username")})
    form.cleaned_data = {}  # not checked (that is the point): an error of the whole form
    form.add_error(
        None,
        f"Too many login attempts {which}; try again in {wait} seconds.",
    )
    context = {
        **site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "form": form,
    }
    response = TemplateResponse(request, "admin/login.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response
