"""The model-version admin: the version list and a version's read-only page.

Only `status` is editable; everything else is shown from the stored, immutable version. What
the page shows beneath the fields is put together in `version_page.py`.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Prefetch
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from chatmodels.admin import display
from chatmodels.admin.display import EMPTY
from chatmodels.admin.registered_models import VERSION_CONTENT_COLUMNS, alias_queryset
from chatmodels.admin.version_page import version_page_context
from chatmodels.models import ModelVersion


class VersionChangeList(ChangeList):
    """The version listing never loads a version's signature, code or configuration."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*VERSION_CONTENT_COLUMNS)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    # `name/N` names the model too (its page links it): no separate model column, so the list
    # fits at 1,280 px.
    list_display = (
        "__str__",
        display.status,
        "aliases_display",
        display.digest,
        display.created,
        "created_by",
    )
    list_display_links = ("__str__",)
    list_filter = ("status", "interface", "model", "created_at")
    list_select_related = ("model",)
    search_fields = ("model__name", "digest", "class_path", "created_by")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("model_link", "version_display"),
                    ("status", "aliases_display"),
                    ("class_path", "interface"),
                    ("created_at", "created_by"),
                )
            },
        ),
        (
            "Package",
            {
                "fields": (
                    "digest",
                    ("package_file", "size_display"),
                    "python_version",
                ),
            },
        ),
    )
    readonly_fields = (
        "model_link",
        "version_display",
        "aliases_display",
        "class_path",
        "interface",
        "created_at",
        "created_by",
        "digest",
        "package_file",
        "size_display",
        "python_version",
    )
    change_form_template = "admin/chatmodels/modelversion/change_form.html"

    class Media:
        css = {"all": ("chatmodels/admin.css",)}
        js = ("chatmodels/copy.js",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("model")
            .prefetch_related(Prefetch("aliases", queryset=alias_queryset()))
        )

    def get_changelist(self, request, **kwargs):
        return VersionChangeList

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"title": "Model versions", **(extra_context or {})}
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(version_page_context(request, obj))
            context["title"] = f"{obj.model.name} · version {obj.version}"
            context["subtitle"] = obj.model.description or None
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="model", ordering="model__name")
    def model_link(self, version):
        url = reverse("admin:chatmodels_registeredmodel_change", args=[version.model_id])
        return format_html('<a href="{}">{}</a>', url, version.model.name)

    @admin.display(description="version", ordering="version")
    def version_display(self, version):
        return format_html("<strong>v{}</strong>", version.version)

    @admin.display(description="aliases")
    def aliases_display(self, version):
        return display.pills(
            [alias.name for alias in version.aliases.all()], "cm-pill cm-pill-alias"
        )

    @admin.display(description="package file")
    def package_file(self, version):
        return format_html("<code>{}</code>", version.package.name) if version.package else EMPTY

    @admin.display(description="package size")
    def size_display(self, version):
        return format_html(
            '{} <span class="cm-muted">({} bytes)</span>',
            filesizeformat(version.size),
            f"{version.size:,}",
        )
