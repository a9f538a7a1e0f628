"""The registered-model admin: the model list, a model's page with its aliases, tags and versions.

Aliases are saved through `services.set_alias` / `services.remove_alias`; versions are listed
read-only. The playground pages (`playground.py`) and the model workers page (`workers.py`) are
routed from here.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, OuterRef, Prefetch
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from chatmodels import services
from chatmodels.admin import display, playground, workers
from chatmodels.admin.display import EMPTY, playground_url
from chatmodels.exceptions import ChatModelsError
from chatmodels.models import (
    RESERVED_ALIASES,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
)

# Heavy per-version columns that no listing needs.
VERSION_CONTENT_COLUMNS = (
    "signature",
    "input_example",
    "model_config",
    "artifacts",
    "source_code",
    "package_versions",
)


def alias_queryset():
    """The alias rows with their version number only: no version content is loaded."""
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


class ModelAliasInline(admin.TabularInline):
    """Aliases point at a version of this model; saving goes through `services.set_alias`."""

    model = ModelAlias
    form = ModelAliasForm
    # Django takes callables in fields and readonly_fields; django-stubs type them as names only.
    fields = ("name", "version", display.updated)  # type: ignore[assignment]
    readonly_fields = (display.updated,)  # type: ignore[assignment]
    extra = 0
    verbose_name = "alias"
    verbose_name_plural = "Aliases"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("model")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        choices: list[tuple[int | str, str]] = []  # (pk, label)

        class AliasForm(formset.form):  # type: ignore[name-defined]  # a class known at run time
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.fields["version"].choices = choices

        # Set up the field of the final form class (subclassing rebuilds base_fields).
        formset.form = AliasForm
        field = AliasForm.base_fields["version"]
        versions = ModelVersion.objects.filter(model=obj) if obj else ModelVersion.objects.none()
        field.queryset = versions.only("pk", "version", "status").order_by("-version")
        field.label_from_instance = display.version_label
        # Versions are created by registration only: no "+"/"edit"/"view" buttons by the select.
        if isinstance(field.widget, RelatedFieldWidgetWrapper):
            field.widget = field.widget.widget
        # One query for the version menu, however many alias rows show it (Django would run
        # one per row); a submitted choice is still checked against this model's versions.
        choices += [("", field.empty_label)]
        choices += [(version.pk, display.version_label(version)) for version in field.queryset]
        return formset


class ModelVersionInline(admin.TabularInline):
    """The model's versions, read-only: a version is made by registration and never edited here."""

    model = ModelVersion
    # Callables, as in ModelAliasInline.
    fields = (  # type: ignore[assignment]
        display.version_number,
        display.status,
        display.digest,
        display.created,
        "created_by",
    )
    readonly_fields = fields  # type: ignore[assignment]
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


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "description_display",
        "latest_and_try_display",
        "version_count_display",
        "aliases_display",
        "tags_display",
        display.updated,
    )
    list_display_links = ("name",)
    search_fields = ("name", "description", "tags__value", "tags__key")
    list_filter = (HasAliasesFilter, TagKeyFilter, "created_at")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "description",
                    "max_concurrency",
                    "worker_replicas",
                    "worker_memory_mb",
                )
            },
        ),
        ("Summary", {"fields": ("latest_version_display", "how_to_call_display")}),
        ("Dates", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "latest_version_display",
        "how_to_call_display",
        "created_at",
        "updated_at",
    )
    inlines = (ModelAliasInline, ModelTagInline, ModelVersionInline)
    change_list_template = "admin/chatmodels/registeredmodel/change_list.html"

    class Media:
        css = {"all": ("chatmodels/admin.css",)}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .with_latest_version()  # type: ignore[attr-defined]  # objects makes this queryset
            .annotate(version_count=Count("versions", distinct=True))
            .prefetch_related(
                Prefetch("aliases", queryset=alias_queryset()),
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
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        pages = (
            ("playground/", self.playground_view, "playground"),
            ("playground/invoke/", self.playground_invoke_view, "playground_invoke"),
            ("workers/", self.workers_view, "workers"),
            ("workers/restart/", self.restart_workers_view, "restart_workers"),
        )
        urls = [
            path(route, self.admin_site.admin_view(view), name=f"{prefix}_{name}")
            for route, view, name in pages
        ]
        return urls + super().get_urls()

    def playground_view(self, request):
        return playground.playground(request, model_admin=self)

    def playground_invoke_view(self, request):
        return playground.playground_invoke(request, model_admin=self)

    def workers_view(self, request):
        return workers.workers_page(request, model_admin=self)

    def restart_workers_view(self, request):
        return workers.restart_workers(request, model_admin=self)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                title=f"Model {obj.name}",
                subtitle=None,
                workers_url=workers.workers_url(model=obj.name),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": "Registered models",
            "playground_url": playground_url(),
            "workers_url": workers.workers_url(),
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

    @admin.display(description="latest", ordering="latest_version")
    def latest_version_display(self, model):
        if model.latest_version is None:
            return EMPTY
        return display.version_link(pk=model.latest_version_id, number=model.latest_version)

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
        return display.pills(
            [f"{alias.name} → v{alias.version_number}" for alias in model.aliases.all()],
            "cm-pill cm-pill-alias",
        )

    @admin.display(description="tags")
    def tags_display(self, model):
        return display.pills(
            [f"{tag.key}={tag.value}" if tag.value else tag.key for tag in model.tags.all()],
            "cm-pill cm-pill-tag",
        )

    @admin.display(description="latest", ordering="latest_version")
    def latest_and_try_display(self, model):
        """The latest version and, when there is one, a link to try it in the playground."""
        if model.latest_version is None:
            return EMPTY
        return format_html(
            '{} <a class="cm-try" href="{}">Try&nbsp;▸</a>',
            self.latest_version_display(model),
            playground_url(model=model.name),
        )

    @admin.display(description="use it")
    def how_to_call_display(self, model):
        return format_html(
            '<a class="cm-button" href="{}">Try it in the playground</a>'
            ' <span class="cm-muted">or call <code>POST {}</code>'
            " · OpenAI model <code>{}</code></span>",
            playground_url(model=model.name),
            reverse("model-invocations", kwargs={"name": model.name}),
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
