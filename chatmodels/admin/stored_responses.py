"""Stored responses of the Responses API, per API key and model: listed and shown, read-only.

The list is `responses_store.list_stored_responses()`; the page shows the response object as
the API answers it, and its input items. Responses are deleted by their key (`DELETE
/v1/responses/{id}`) or by `manage.py prune_responses`, never here.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from chatmodels import responses_store
from chatmodels.admin import display
from chatmodels.models import StoredItem, StoredResponse


class ModelNameFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model_name"

    def lookups(self, request, model_admin):
        names = StoredResponse.objects.order_by("model_name").values_list("model_name", flat=True)
        return [(name, name) for name in names.distinct()]

    def queryset(self, request, queryset):
        return queryset.filter(model_name=self.value()) if self.value() else queryset


def _pretty(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(StoredResponse)
class StoredResponseAdmin(admin.ModelAdmin):
    list_display = ("response_id", "api_key", "model", "status", display.created)
    list_filter = ("api_key", ModelNameFilter, "status", "created_at")
    search_fields = ("response_id",)
    list_select_related = ("api_key",)
    fields = ("response_id", "api_key", "model", "status", "created_at", "input", "answer")
    readonly_fields = fields

    def get_queryset(self, request):
        return responses_store.list_stored_responses()

    @admin.display(description="input items")
    def input(self, obj: StoredResponse) -> str:
        items = StoredItem.objects.filter(
            thread_id=obj.thread_id, position__gte=obj.input_start, position__lt=obj.output_start
        ).values_list("item", flat=True)
        return _pretty(list(items))

    @admin.display(description="response object")
    def answer(self, obj: StoredResponse) -> str:
        return _pretty(obj.response)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
