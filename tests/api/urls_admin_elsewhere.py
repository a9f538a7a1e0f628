"""The project's URLs with the admin at /manage/ instead of /admin/ (for test_middleware.py)."""

from django.contrib import admin
from django.urls import path

from project import urls as project_urls

urlpatterns = [
    path("manage/", admin.site.urls) if str(pattern.pattern) == "admin/" else pattern
    for pattern in project_urls.urlpatterns
]

handler404 = project_urls.handler404
