"""Top-level URLs: the admin, the registry and serving API, the OpenAI-compatible routes, health,
and a landing page at `/` for people who open the server in a browser."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import TemplateView

import chatmodels


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask every page for /favicon.ico: the icon, not a 404 in the log each time."""
    return HttpResponseRedirect(static("chatmodels/favicon.svg"))


urlpatterns = [
    # The API first: the serving routes are matched on every call.
    path("", include("chatmodels.api.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon),
    # `/` exactly; every other unknown path stays an OpenAI-format JSON 404 (handler404).
    path(
        "",
        TemplateView.as_view(
            template_name="chatmodels/landing.html",
            extra_context={"version": chatmodels.__version__},
        ),
        name="home",
    ),
]

handler400 = "chatmodels.api.errors.bad_request"
handler403 = "chatmodels.api.errors.permission_denied"
handler404 = "chatmodels.api.errors.page_not_found"
handler500 = "chatmodels.api.errors.server_error"
