"""How the admin shows values to people: dates, statuses, digests, labels, version links.

Each value is rendered here once; the ModelAdmins list these `@admin.display` callables (or call
the helpers) instead of writing their own near-copies.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from chatmodels.models import ModelVersion

EMPTY = "—"


def playground_url(*, model: str | None = None, version: int | None = None) -> str:
    """The playground, with a model (and version) chosen when given."""
    url = reverse("admin:chatmodels_registeredmodel_playground")
    query = {key: value for key, value in (("model", model), ("version", version)) if value}
    return f"{url}?{urlencode(query)}" if query else url


def pills(texts: Iterable[str], css_class: str = "cm-pill") -> SafeString | str:
    """Small rounded labels, one per text (escaped); a dash when there are none."""
    texts = list(texts)
    if not texts:
        return EMPTY
    return format_html_join(" ", '<span class="{}">{}</span>', ((css_class, t) for t in texts))


def datetime_text(value) -> str:
    """`2026-11-24 19:40` in the current time zone: the admin's DATETIME_FORMAT, the one Django's
    own read-only fields use too (project/formats/en/formats.py)."""
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def compact_datetime(value) -> SafeString | str:
    """`2026-11-24 19:40` in the current time zone, the full timestamp on hover."""
    if value is None:
        return EMPTY
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z"),
        datetime_text(value),
    )


def version_link(*, pk: int, number: int) -> SafeString:
    """`v3`, bold, linking to the version's page."""
    url = reverse("admin:chatmodels_modelversion_change", args=[pk])
    return format_html('<a href="{}"><strong>v{}</strong></a>', url, number)


def version_label(version: ModelVersion) -> str:
    """`v3`, or `v3 (archived)`: a version in a menu."""
    archived = version.status == ModelVersion.Status.ARCHIVED
    return f"v{version.version}" + (" (archived)" if archived else "")


def badge(text: str, css_state: str) -> SafeString:
    """A coloured state label (`cm-status-<css_state>` picks the colour)."""
    return format_html('<span class="cm-status cm-status-{}">{}</span>', css_state, text)


# --- columns and read-only fields shared by several ModelAdmins --------------------------------


@admin.display(description="created", ordering="created_at")
def created(obj) -> SafeString | str:
    return compact_datetime(obj.created_at)


@admin.display(description="updated", ordering="updated_at")
def updated(obj) -> SafeString | str:
    return compact_datetime(obj.updated_at)


@admin.display(description="version", ordering="version")
def version_number(version) -> SafeString:
    """A version's number, linking to its page."""
    return version_link(pk=version.pk, number=version.version)


@admin.display(description="status", ordering="status")
def status(version) -> SafeString:
    return badge(version.status, version.status)


@admin.display(description="digest", ordering="digest")
def digest(version) -> SafeString:
    """The digest's first 12 characters; all of it on hover."""
    return format_html('<code title="sha256:{}">{}…</code>', version.digest, version.digest[:12])
