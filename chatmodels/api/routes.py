"""What a request's route is, asked of the URL configuration and its views, not of the path.

`urls.py` is the one place that knows the URL layout: the middleware and the error handlers ask
the route a request resolved to (is it the admin's? does its view sign people in with a session?)
instead of keeping their own lists of path prefixes.
"""

from __future__ import annotations

from functools import cache

from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, get_resolver
from rest_framework.authentication import SessionAuthentication


def is_admin_route(match: ResolverMatch | None) -> bool:
    """Whether a resolved route is a page of an admin site (every AdminSite's app is "admin")."""
    return match is not None and "admin" in match.app_names


def uses_sessions(match: ResolverMatch | None) -> bool:
    """Whether a route's view signs people in with Django's session: the admin's pages, and API
    views that accept a session besides keys (DRF's `SessionAuthentication`, as `/api/usage/`
    does for staff). API calls authenticate by key only, so they need no session."""
    if match is None:
        return False
    return is_admin_route(match) or _view_accepts_sessions(match.func)


@cache  # one answer per view function, and there are a few dozen of them
def _view_accepts_sessions(view) -> bool:
    view_class = getattr(view, "cls", None) or getattr(view, "view_class", None)
    authenticators = getattr(view_class, "authentication_classes", None) or ()
    return any(
        isinstance(authenticator, type) and issubclass(authenticator, SessionAuthentication)
        for authenticator in authenticators
    )


def is_admin(request: HttpRequest) -> bool:
    """Whether `request` is for the admin, for the error handlers.

    Django's own resolution when the request got that far; otherwise (an error raised before it,
    such as a disallowed host) the path is resolved here, on that error path only.
    """
    match = request.resolver_match
    if match is None:
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return False
    return is_admin_route(match)
