"""API keys: `Authorization: Bearer <key>`, checked against the stored sha256 on every request."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.http import HttpRequest
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from chatmodels.exceptions import MetricsNotAllowed
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import lookups

LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
WWW_AUTHENTICATE = 'Bearer realm="chatmodels"'
NO_KEY = "No API key: send 'Authorization: Bearer <API key>'."
INVALID_KEY = "Invalid or revoked API key."


def bearer_key(header: str) -> str | None:
    """The key an `Authorization` header's value carries; None for no header. A header that is
    not `Bearer <key>` raises AuthenticationFailed."""
    if not header:
        return None
    scheme, _, raw_key = header.partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        raise exceptions.AuthenticationFailed(
            "Malformed Authorization header: expected 'Bearer <API key>'."
        )
    return raw_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Sets `request.auth` to the ApiKeyInfo. No user is involved: `request.user` stays None."""

    keyword = "Bearer"

    def authenticate(self, request: Request):
        raw_key = bearer_key(request._request.META.get("HTTP_AUTHORIZATION", ""))
        if raw_key is None:
            return None
        remembered = getattr(request._request, "_chatmodels_key", None)
        if remembered is not None and remembered[0] == raw_key:
            key = remembered[1]  # looked up by an async view before DRF's authentication
        else:
            key = lookups.api_key(raw_key)
        if key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY)
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


def raw_key_of(request: HttpRequest) -> str:
    """The key a well-formed `Authorization: Bearer <key>` header carries, else ''."""
    try:
        return bearer_key(request.META.get("HTTP_AUTHORIZATION", "")) or ""
    except exceptions.AuthenticationFailed:
        return ""  # DRF's authentication answers it


def remember_key(request: HttpRequest, raw_key: str, key: ApiKeyInfo | None) -> None:
    """What the key `raw_key` is (looked up already): authentication takes it from here."""
    request._chatmodels_key = (raw_key, key)  # type: ignore[attr-defined]


def api_key(request: Request) -> ApiKeyInfo | None:
    """The request's API key, as ApiKeyAuthentication set it in `request.auth` (None without
    one: a session carries none). DRF's stubs type `auth` as its own Token model."""
    return cast("ApiKeyInfo | None", request.auth)


class HasApiKey(permissions.BasePermission):
    """A valid key is required, unless CHATMODELS_ALLOW_ANONYMOUS is on."""

    message = NO_KEY

    def allows_anonymous(self) -> bool:
        """For the OpenAPI schema: may a call without a key get through?"""
        return settings.CHATMODELS_ALLOW_ANONYMOUS

    def has_permission(self, request: Request, view) -> bool:
        if request.auth is not None or settings.CHATMODELS_ALLOW_ANONYMOUS:
            return True
        raise exceptions.NotAuthenticated(self.message)


class CanReadUsage(permissions.BasePermission):
    """`/api/usage/`: an API key (which sees its own usage), or a staff session allowed to view
    usage in the admin (which sees everyone's)."""

    def has_permission(self, request: Request, view) -> bool:
        if request.auth is not None:
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated(HasApiKey.message)
        if not (user.is_active and user.is_staff and user.has_perm("chatmodels.view_usagebucket")):
            raise exceptions.PermissionDenied("Only staff allowed to view usage may read it.")
        return True


class CanReadMetrics(permissions.BasePermission):
    """GET /metrics: open to the server's own host, to a key with the metrics permission, or to
    all when CHATMODELS_METRICS_PUBLIC is on.

    A request forwarded by a proxy (`X-Forwarded-For` or `Forwarded` set) is not the host's own
    even when the proxy connects from loopback.
    """

    def allows_anonymous(self) -> bool:
        return True  # from this host, or from anywhere with CHATMODELS_METRICS_PUBLIC

    def has_permission(self, request: Request, view) -> bool:
        if settings.CHATMODELS_METRICS_PUBLIC or _from_this_host(request):
            return True
        key = api_key(request)
        if key is None:
            raise exceptions.NotAuthenticated(
                "GET /metrics from another host needs 'Authorization: Bearer <API key>' with a"
                " key that may read metrics."
            )
        if not key.can_read_metrics:
            raise MetricsNotAllowed(f"API key '{key.name}' may not read metrics")
        return True


def _from_this_host(request: Request) -> bool:
    meta = request._request.META
    return (
        meta.get("REMOTE_ADDR") in LOOPBACK_ADDRESSES
        and "HTTP_X_FORWARDED_FOR" not in meta
        and "HTTP_FORWARDED" not in meta
    )
