"""Top-level URLs: the admin, the registry and serving API, the OpenAI-compatible routes, health."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The API first: the serving routes are matched on every call.
    path("", include("chatmodels.api.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "chatmodels.api.errors.bad_request"
handler403 = "chatmodels.api.errors.permission_denied"
handler404 = "chatmodels.api.errors.page_not_found"
handler500 = "chatmodels.api.errors.server_error"
