"""The API-key admin: create a key (its raw value shown once), list keys, revoke them.

Keys are made and revoked through `services`; only a key's hash is stored. A key that has been
used is revoked, not deleted: its usage stays counted against it on the usage pages.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from chatmodels import services
from chatmodels.admin import display
from chatmodels.models import ApiKey, RegisteredModel, UsageBucket

NEW_KEY_ELEMENT_ID = "cm-new-api-key"


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


# Per-key limits and the metrics permission: set when a key is made, changeable later.
API_KEY_LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "monthly_token_budget",
    "can_read_metrics",
)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix_display",
        "allowed_models_display",
        display.created,
        "active_display",
        "revoked_display",
    )
    list_filter = (KeyStateFilter, "created_at")
    search_fields = ("name", "prefix")
    filter_horizontal = ("allowed_models",)
    actions = ("revoke_selected", "delete_selected")

    class Media:
        css = {"all": ("chatmodels/admin.css",)}
        js = ("chatmodels/copy.js",)  # the new key's Copy button

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("allowed_models", queryset=RegisteredModel.objects.only("name"))
            )
        )

    def has_delete_permission(self, request, obj=None):
        # A used key is revoked instead: deleting it would take its usage history with it.
        if obj is not None and _has_usage(obj):
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # Django adds "Hold down Control … to select more than one" to every multiple select,
        # the chooser's too, where models are picked with its arrows: keep the field's own help.
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and db_field.name in self.filter_horizontal:
            field.help_text = db_field.help_text
        return field

    def get_urls(self):
        revoke = path(
            "<path:object_id>/revoke/",
            self.admin_site.admin_view(self.revoke_view),
            name="chatmodels_apikey_revoke",
        )
        return [revoke, *super().get_urls()]

    def revoke_view(self, request, object_id):
        """The Revoke button of a key's page (a POST): the key stops working on the next request."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = get_object_or_404(ApiKey, pk=object_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        if key.is_active:
            services.revoke_api_key(key=key)
            messages.success(request, f"API key “{key.name}” revoked: it is refused from now on.")
        return HttpResponseRedirect(reverse("admin:chatmodels_apikey_change", args=[key.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["used"] = _has_usage(obj)
            context["can_revoke"] = obj.is_active and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "API keys", **(extra_context or {})})

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "allowed_models", *API_KEY_LIMIT_FIELDS)
        return (
            "name",
            "prefix_display",
            "allowed_models",
            *API_KEY_LIMIT_FIELDS,
            "created_at",
            "state_display",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("prefix_display", "created_at", "state_display")

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw_key = services.create_api_key(
            name=form.cleaned_data["name"],
            models=[model.name for model in form.cleaned_data["allowed_models"]],
            **{field: form.cleaned_data[field] for field in API_KEY_LIMIT_FIELDS},
        )
        # The admin goes on with `obj` (change message, redirect): make it the created row.
        for field in ("pk", "prefix", "key_hash", "created_at", "revoked_at"):
            setattr(obj, field, getattr(key, field))
        obj._state.adding = False
        obj._state.db = key._state.db
        messages.success(
            request,
            format_html(
                "API key “{}” created. Copy it now, it will not be shown again:"
                ' <code class="cm-secret" id="{}">{}</code>'
                ' <button type="button" class="button cm-copy" data-copy-target="{}">Copy</button>',
                key.name,
                NEW_KEY_ELEMENT_ID,
                raw_key,
                NEW_KEY_ELEMENT_ID,
            ),
            extra_tags="cm-api-key",
        )
        return None

    def save_related(self, request, form, formsets, change):
        if not change:
            return None  # create_api_key already stored the allowed models.
        return super().save_related(request, form, formsets, change)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.revoke_api_key(key=key)
            revoked += 1
        messages.success(request, f"Revoked {revoked} key{'s' if revoked != 1 else ''}.")

    # Django's own action by its name (its confirmation page posts it back), for unused keys only.
    @admin.action(description="Delete selected keys that were never used", permissions=["delete"])
    def delete_selected(self, request, queryset):
        used = list(
            queryset.filter(pk__in=UsageBucket.objects.values("api_key")).values_list(
                "name", flat=True
            )
        )
        if used:
            names = ", ".join(f"“{name}”" for name in used)
            messages.error(
                request,
                f"Not deleted: {names} {'has' if len(used) == 1 else 'have'} recorded usage."
                " Revoke a used key instead (“Revoke selected keys”, or Revoke on its page):"
                " it stops working and its usage stays on the usage page.",
            )
            return None
        return admin_actions.delete_selected(self, request, queryset)  # Django's confirmation

    @admin.display(description="prefix", ordering="prefix")
    def prefix_display(self, key):
        return format_html("<code>{}…</code>", key.prefix)

    @admin.display(description="allowed models")
    def allowed_models_display(self, key):
        names = [model.name for model in key.allowed_models.all()]
        if not names:
            return format_html('<span class="cm-muted">{}</span>', "all models")
        return display.pills(names, "cm-pill")

    @admin.display(description="revoked", ordering="revoked_at")
    def revoked_display(self, key):
        return display.compact_datetime(key.revoked_at)

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def active_display(self, key):
        return key.is_active

    @admin.display(description="state")
    def state_display(self, key):
        if key.is_active:
            return display.badge("active", "active")
        return display.badge(f"revoked {display.datetime_text(key.revoked_at)}", "revoked")


def _has_usage(key: ApiKey) -> bool:
    return UsageBucket.objects.filter(api_key=key).exists()
