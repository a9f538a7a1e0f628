"""The project's URLs with the admin at /manage/ instead of /admin/ (for test_middleware.py)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("chatmodels.api.urls")),
    path("manage/", admin.site.urls),
]

handler404 = "chatmodels.api.errors.page_not_found"
