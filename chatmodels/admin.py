"""The Django admin: registered models, their read-only versions, aliases, tags, API keys.

Writes go through `services` (aliases, API keys); versions are shown, never edited, except
their `status`. The playground views live in `admin_views.py` and are routed from here.
"""

from __future__ import annotations

import json
import shlex

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Subquery
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from chatmodels import admin_usage, admin_views, services  # noqa: F401 - admin_usage registers "Usage"
from chatmodels.exceptions import ChatModelsError
from chatmodels.models import (
    RESERVED_ALIASES,
    ApiKey,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
)
from chatmodels.signature import chat_signature, signature_rows

admin.site.site_header = "chatmodels"
admin.site.site_title = "chatmodels"
admin.site.index_title = "Registry and serving"

# Heavy per-version columns that no listing needs.
VERSION_CONTENT_COLUMNS = (
    "signature",
    "input_example",
    "model_config",
    "artifacts",
    "source_code",
    "package_versions",
)
EMPTY = "—"


def playground_url(*, model: str | None = None, version: int | None = None) -> str:
    url = reverse("admin:chatmodels_registeredmodel_playground")
    query = {key: value for key, value in (("model", model), ("version", version)) if value}
    return f"{url}?{urlencode(query)}" if query else url


def _pills(texts, css_class: str = "cm-pill"):
    """Small rounded labels, one per text (escaped)."""
    if not texts:
        return EMPTY
    return format_html_join(" ", '<span class="{}">{}</span>', ((css_class, t) for t in texts))


def _alias_queryset():
    # The alias rows with their version number only: no version content is loaded.
    return (
        ModelAlias.objects.annotate(version_number=F("version__version"))
        .only("name", "model", "version")
        .order_by("name")
    )


# --- Registered models -------------------------------------------------------------------------


class HasAliasesFilter(admin.SimpleListFilter):
    title = "aliases"
    parameter_name = "has_aliases"

    def lookups(self, request, model_admin):
        return (("yes", "With aliases"), ("no", "Without aliases"))

    def queryset(self, request, queryset):
        has_alias = Exists(ModelAlias.objects.filter(model=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(has_alias)
        if self.value() == "no":
            return queryset.filter(~has_alias)
        return queryset


class TagKeyFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        keys = ModelTag.objects.order_by("key").values_list("key", flat=True).distinct()
        return [(key, key) for key in keys]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(
                Exists(ModelTag.objects.filter(model=OuterRef("pk"), key=self.value()))
            )
        return queryset


class ModelTagInline(admin.TabularInline):
    model = ModelTag
    fields = ("key", "value")
    extra = 0
    verbose_name = "tag"
    verbose_name_plural = "Tags"


class ModelAliasForm(forms.ModelForm):
    class Meta:
        model = ModelAlias
        fields = ("name", "version")
        help_texts = {"name": ""}

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name in RESERVED_ALIASES:
            raise ValidationError(
                f"“{name}” is reserved: it always means the newest ready version."
            )
        return name


def _version_label(version: ModelVersion) -> str:
    return f"v{version.version}" + (" (archived)" if version.status == "archived" else "")


class ModelAliasInline(admin.TabularInline):
    """Aliases point at a version of this model; saving goes through `services.set_alias`."""

    model = ModelAlias
    form = ModelAliasForm
    fields = ("name", "version", "updated_display")
    readonly_fields = ("updated_display",)
    extra = 0
    verbose_name = "alias"
    verbose_name_plural = "Aliases"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("model")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        choices = []

        class AliasForm(formset.form):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.fields["version"].choices = choices

        # Set up the field of the final form class (subclassing rebuilds base_fields).
        formset.form = AliasForm
        field = AliasForm.base_fields["version"]
        versions = ModelVersion.objects.filter(model=obj) if obj else ModelVersion.objects.none()
        field.queryset = versions.only("pk", "version", "status").order_by("-version")
        field.label_from_instance = _version_label
        # Versions are created by registration only: no "+"/"edit"/"view" buttons by the select.
        if isinstance(field.widget, RelatedFieldWidgetWrapper):
            field.widget = field.widget.widget
        # One query for the version menu, however many alias rows show it (Django would run
        # one per row); a submitted choice is still checked against this model's versions.
        choices += [("", field.empty_label)]
        choices += [(version.pk, _version_label(version)) for version in field.queryset]
        return formset

    @admin.display(description="updated")
    def updated_display(self, alias):
        return compact_datetime(alias.updated_at) if alias.updated_at else EMPTY


class ModelVersionInline(admin.TabularInline):
    """The model's versions, read-only: a version is made by registration and never edited here."""

    model = ModelVersion
    fields = ("version_link", "status_badge", "digest_short", "created_display", "created_by")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "Versions"
    classes = ("cm-versions",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("model")
            .defer(*VERSION_CONTENT_COLUMNS)
            .order_by("-version")
        )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="version")
    def version_link(self, version):
        url = reverse("admin:chatmodels_modelversion_change", args=[version.pk])
        return format_html('<a href="{}"><strong>v{}</strong></a>', url, version.version)

    @admin.display(description="status")
    def status_badge(self, version):
        return status_badge(version)

    @admin.display(description="digest")
    def digest_short(self, version):
        return format_html('<code title="{}">{}…</code>', version.digest, version.digest[:12])

    @admin.display(description="created")
    def created_display(self, version):
        return compact_datetime(version.created_at)


def compact_datetime(value):
    """`2026-11-24 19:40` in the current time zone, the full timestamp on hover."""
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        local.strftime("%Y-%m-%d %H:%M"),
    )


def status_badge(version):
    return format_html(
        '<span class="cm-status cm-status-{}">{}</span>', version.status, version.status
    )


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "description_display",
        "latest_version_display",
        "version_count_display",
        "aliases_display",
        "tags_display",
        "updated_display",
        "playground_display",
    )
    list_display_links = ("name",)
    search_fields = ("name", "description", "tags__value", "tags__key")
    list_filter = (HasAliasesFilter, TagKeyFilter, "created_at")
    fieldsets = (
        (None, {"fields": ("name", "description", "max_concurrency")}),
        ("Summary", {"fields": ("latest_version_display", "usage_display")}),
        ("Dates", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "latest_version_display",
        "usage_display",
        "created_at",
        "updated_at",
    )
    inlines = (ModelAliasInline, ModelTagInline, ModelVersionInline)
    change_list_template = "admin/chatmodels/registeredmodel/change_list.html"

    class Media:
        css = {"all": ("chatmodels/admin.css",)}

    def get_queryset(self, request):
        latest = ModelVersion.objects.filter(model=OuterRef("pk"), status="ready").order_by(
            "-version"
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                version_count=Count("versions", distinct=True),
                latest_version_number=Subquery(latest.values("version")[:1]),
                latest_version_id=Subquery(latest.values("pk")[:1]),
            )
            .prefetch_related(
                Prefetch("aliases", queryset=_alias_queryset()),
                Prefetch("tags", queryset=ModelTag.objects.order_by("key")),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return ("name", *fields) if obj else fields

    def has_add_permission(self, request):
        # Models are created by registering code: `python manage.py register_model`.
        return False

    def has_delete_permission(self, request, obj=None):
        # Versions are protected and immutable; a model disappears only with its versions.
        return False

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        urls = [
            path(
                "playground/",
                self.admin_site.admin_view(self.playground_view),
                name="{}_{}_playground".format(*info),
            ),
            path(
                "playground/invoke/",
                self.admin_site.admin_view(self.playground_invoke_view),
                name="{}_{}_playground_invoke".format(*info),
            ),
        ]
        return urls + super().get_urls()

    def playground_view(self, request):
        return admin_views.playground(request, model_admin=self)

    def playground_invoke_view(self, request):
        return admin_views.playground_invoke(request, model_admin=self)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(title=f"Model {obj.name}", subtitle=None)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": "Registered models",
            "playground_url": playground_url(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="description")
    def description_display(self, model):
        text = " ".join(model.description.split())
        if not text:
            return EMPTY
        short = text if len(text) <= 80 else text[:79] + "…"
        return format_html('<span class="cm-description" title="{}">{}</span>', text, short)

    @admin.display(description="latest", ordering="latest_version_number")
    def latest_version_display(self, model):
        if model.latest_version_number is None:
            return EMPTY
        url = reverse("admin:chatmodels_modelversion_change", args=[model.latest_version_id])
        return format_html(
            '<a href="{}"><strong>v{}</strong></a>', url, model.latest_version_number
        )

    @admin.display(description="versions", ordering="version_count")
    def version_count_display(self, model):
        url = reverse("admin:chatmodels_modelversion_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"model__id__exact": model.pk}),
            model.version_count,
        )

    @admin.display(description="aliases")
    def aliases_display(self, model):
        return _pills(
            [f"{alias.name} → v{alias.version_number}" for alias in model.aliases.all()],
            "cm-pill cm-pill-alias",
        )

    @admin.display(description="tags")
    def tags_display(self, model):
        return _pills(
            [f"{tag.key}={tag.value}" if tag.value else tag.key for tag in model.tags.all()],
            "cm-pill cm-pill-tag",
        )

    @admin.display(description="updated", ordering="updated_at")
    def updated_display(self, model):
        return compact_datetime(model.updated_at)

    @admin.display(description="")
    def playground_display(self, model):
        if model.latest_version_number is None:
            return ""
        return format_html(
            '<a class="cm-try" href="{}">Try&nbsp;▸</a>', playground_url(model=model.name)
        )

    @admin.display(description="use it")
    def usage_display(self, model):
        return format_html(
            '<a class="cm-button" href="{}">Open in the playground</a>'
            ' <span class="cm-muted">or call <code>POST /api/models/{}/invocations</code>'
            " · OpenAI model <code>{}</code></span>",
            playground_url(model=model.name),
            model.name,
            model.name,
        )

    def save_formset(self, request, form, formset, change):
        if formset.model is not ModelAlias:
            return super().save_formset(request, form, formset, change)
        model = form.instance
        formset.save(commit=False)
        for alias in formset.deleted_objects:
            self._apply_alias(request, services.remove_alias, name=model.name, alias=alias.name)
        for alias_form in formset.forms:
            if alias_form in formset.deleted_forms or not alias_form.has_changed():
                continue
            alias = alias_form.instance
            previous_name = alias_form.initial.get("name")
            if previous_name and previous_name != alias.name:
                self._apply_alias(
                    request, services.remove_alias, name=model.name, alias=previous_name
                )
            self._apply_alias(
                request,
                services.set_alias,
                name=model.name,
                alias=alias.name,
                version=alias.version.version,
            )
        return None

    @staticmethod
    def _apply_alias(request, operation, **kwargs) -> None:
        try:
            operation(**kwargs)
        except ChatModelsError as error:
            messages.error(request, f"Alias “{kwargs['alias']}”: {error}")


# --- Versions ----------------------------------------------------------------------------------


class VersionChangeList(ChangeList):
    """The version listing never loads a version's signature, code or configuration."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer(*VERSION_CONTENT_COLUMNS)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "model_link",
        "status_display",
        "aliases_display",
        "digest_display",
        "created_display",
        "created_by",
    )
    list_display_links = ("__str__",)
    list_filter = ("status", "model", "created_at")
    list_select_related = ("model",)
    search_fields = ("model__name", "digest", "class_path", "created_by")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("model_link", "version_display"),
                    "status",
                    "aliases_display",
                    "class_path",
                    ("created_at", "created_by"),
                )
            },
        ),
        (
            "Package",
            {
                "fields": (
                    "digest",
                    "package_file",
                    "size_display",
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
            .prefetch_related(Prefetch("aliases", queryset=_alias_queryset()))
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

    @admin.display(description="status", ordering="status")
    def status_display(self, version):
        return status_badge(version)

    @admin.display(description="aliases")
    def aliases_display(self, version):
        return _pills([alias.name for alias in version.aliases.all()], "cm-pill cm-pill-alias")

    @admin.display(description="digest", ordering="digest")
    def digest_display(self, version):
        return format_html(
            '<code title="sha256:{}">{}…</code>', version.digest, version.digest[:12]
        )

    @admin.display(description="created", ordering="created_at")
    def created_display(self, version):
        return compact_datetime(version.created_at)

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


def _pretty_json(value, *, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=sort_keys)


# PostgreSQL's jsonb does not keep the order of keys, so the page puts them back in an order
# people expect (the generated schema's, `messages` first) whichever database stores them.


def _ordered_like(value, reference):
    """`value` with the keys of each object in `reference`'s order, unknown keys last."""
    if isinstance(value, dict) and isinstance(reference, dict):
        ordered = {
            key: _ordered_like(value[key], reference[key]) for key in reference if key in value
        }
        ordered.update((key, value[key]) for key in sorted(value) if key not in ordered)
        return ordered
    if isinstance(value, list) and isinstance(reference, list) and len(value) == len(reference):
        return [_ordered_like(item, match) for item, match in zip(value, reference, strict=True)]
    return value


def _schema_part(schema, key: str):
    """`schema[key]`, or the first `anyOf` alternative's."""
    if not isinstance(schema, dict):
        return None
    if key in schema:
        return schema[key]
    return next((alt[key] for alt in schema.get("anyOf", ()) if key in alt), None)


def _in_schema_order(value, schema):
    """A JSON value with its object keys in the order its JSON Schema lists the properties."""
    if isinstance(value, dict):
        properties = _schema_part(schema, "properties") or {}
        ordered = {
            key: _in_schema_order(value[key], properties[key]) for key in properties if key in value
        }
        ordered.update((key, value[key]) for key in sorted(value) if key not in ordered)
        return ordered
    if isinstance(value, list):
        items = _schema_part(schema, "items")
        return [_in_schema_order(item, items) for item in value]
    return value


def version_page_context(request, version: ModelVersion) -> dict:
    """What the read-only version page shows beneath the fields."""
    signature = _ordered_like(version.signature or {}, chat_signature())
    input_example = _in_schema_order(version.input_example, signature.get("inputs"))
    tables = []
    for key, title in (("inputs", "Inputs"), ("outputs", "Outputs")):
        rows = []
        for row in signature_rows(signature.get(key) or {}):
            parent, dot, leaf = row.field.rpartition(".")
            rows.append(
                {
                    "row": row,
                    "parent": parent + dot,
                    # Long paths may wrap between their parts (never inside one).
                    "parent_parts": [part + "." for part in parent.split(".")] if dot else [],
                    "leaf": leaf,
                    "depth": row.field.count("."),
                    "default": row.default,  # already written for people: 1.0, null, false
                }
            )
        tables.append({"title": title, "rows": rows})

    artifacts = [
        {
            "name": name,
            "size": filesizeformat(info.get("size") or 0) if isinstance(info, dict) else "",
            "sha256": info.get("sha256", "") if isinstance(info, dict) else "",
            "path": info.get("path", "") if isinstance(info, dict) else str(info),
        }
        for name, info in sorted((version.artifacts or {}).items())
    ]
    invocation_path = f"/api/models/{version.model.name}/invocations?version={version.version}"
    body = json.dumps(input_example, ensure_ascii=False)
    curl = (
        f"curl {shlex.quote(request.build_absolute_uri(invocation_path))} \\\n"
        '  -H "Authorization: Bearer $CHATMODELS_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )
    return {
        "version_obj": version,
        "signature_tables": tables,
        "input_example_json": _pretty_json(input_example),
        "model_config_json": (
            _pretty_json(version.model_config, sort_keys=True) if version.model_config else ""
        ),
        "artifact_rows": artifacts,
        "package_version_rows": sorted(
            (package, number)
            for package, number in (version.package_versions or {}).items()
            if package != "python"  # shown first, from python_version
        ),
        "curl_example": curl,
        "openai_model_name": f"{version.model.name}/{version.version}",
        "playground_link": playground_url(model=version.model.name, version=version.version),
        "source_lines": (version.source_code or "").splitlines(),
    }


# --- API keys ----------------------------------------------------------------------------------


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
        "created_display",
        "active_display",
        "revoked_display",
    )
    list_filter = (KeyStateFilter, "created_at")
    search_fields = ("name", "prefix")
    filter_horizontal = ("allowed_models",)
    actions = ("revoke_selected",)

    class Media:
        css = {"all": ("chatmodels/admin.css",)}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("allowed_models", queryset=RegisteredModel.objects.only("name"))
            )
        )

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
                ' <code class="cm-secret">{}</code>',
                key.name,
                raw_key,
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

    @admin.display(description="prefix", ordering="prefix")
    def prefix_display(self, key):
        return format_html("<code>{}…</code>", key.prefix)

    @admin.display(description="allowed models")
    def allowed_models_display(self, key):
        names = [model.name for model in key.allowed_models.all()]
        if not names:
            return format_html('<span class="cm-muted">{}</span>', "all models")
        return _pills(names, "cm-pill")

    @admin.display(description="created", ordering="created_at")
    def created_display(self, key):
        return compact_datetime(key.created_at)

    @admin.display(description="revoked", ordering="revoked_at")
    def revoked_display(self, key):
        return compact_datetime(key.revoked_at) if key.revoked_at else EMPTY

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def active_display(self, key):
        return key.is_active

    @admin.display(description="state")
    def state_display(self, key):
        if key.is_active:
            return format_html('<span class="cm-status cm-status-ready">{}</span>', "active")
        return format_html(
            '<span class="cm-status cm-status-archived">revoked {}</span>',
            timezone.localtime(key.revoked_at).strftime("%Y-%m-%d %H:%M"),
        )
