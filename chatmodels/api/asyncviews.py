"""Async DRF views for the chat routes: a request waiting on its model holds no thread.

adrf gives DRF views and viewsets `async def` handlers; its dispatch runs DRF's `initial`
(authentication, permissions, throttles) in a thread for every request. Here the API key is
looked up first (`lookups.api_key_async`: remembered for a second, else asked in a thread), so
that `initial` only reads memory and runs on the event loop, unless a global request rate
(CHATMODELS_THROTTLE_RATE) must ask the limits store: then it runs in a thread as adrf does.
"""

from __future__ import annotations

import inspect
from typing import Any

from adrf import views as adrf_views
from adrf import viewsets as adrf_viewsets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from rest_framework import views as drf_views
from rest_framework.request import Request

from chatmodels.api import auth
from chatmodels.serving import lookups


class AsyncDispatch:
    """The dispatch of adrf's views, with `initial` on the event loop (see the module)."""

    def dispatch(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # Every view of these classes is async (adrf asks `view_is_async` of the class on
        # every request, walking all its members).
        return self.async_dispatch(request, *args, **kwargs)

    # `self` is a DRF view (this is a mixin for adrf's classes).
    async def async_dispatch(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        raw_key = auth.raw_key_of(request)
        if raw_key:
            auth.remember_key(request, raw_key, await lookups.api_key_async(raw_key))
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            if settings.CHATMODELS_THROTTLE_RATE:
                await sync_to_async(self.initial)(drf_request, *args, **kwargs)
            else:
                self.initial(drf_request, *args, **kwargs)
            method = drf_request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            handler = handler or self.http_method_not_allowed
            if inspect.iscoroutinefunction(handler):
                response = await handler(drf_request, *args, **kwargs)
            else:
                response = await sync_to_async(handler)(drf_request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    # The project's permissions and throttles are plain functions: DRF's own checks, not
    # adrf's (which start a second event loop for async ones, and cannot on this one).
    def check_permissions(self: Any, request: Request) -> None:
        drf_views.APIView.check_permissions(self, request)

    def check_throttles(self: Any, request: Request) -> None:
        drf_views.APIView.check_throttles(self, request)


class AsyncAPIView(AsyncDispatch, adrf_views.APIView):
    """An APIView whose `async def` handlers run on the event loop."""


class AsyncGenericViewSet(AsyncDispatch, adrf_viewsets.GenericViewSet):
    """A generic viewset; its `async def` actions run on the event loop, the others in a thread."""
