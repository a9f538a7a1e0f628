"""The admin's usage pages: "Usage" in the admin index (charts over a date range, per model and
per API key), and the usage block of each API key's page.

Reads go through `selectors.list_usage` / `usage_totals`, the same as `GET /api/usage/`; the
charts are inline SVG drawn by `charts.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from chatmodels import charts, selectors
from chatmodels.exceptions import ERROR_KINDS
from chatmodels.models import ApiKey, RegisteredModel, UsageBucket

PRESETS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PRESET_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PRESET = "7d"  # once there is more than a day of usage; before that, "24h"
HOURLY_UP_TO = timedelta(days=7)  # longer ranges are drawn per day
MAX_DAYS = 400
TOP_MODELS = 6  # the requests chart stacks this many models and "other"
# Each error kind's colour in the errors chart (colour-blind safe), in the order of ERROR_KINDS.
ERROR_COLOURS = ("#e69f00", "#56b4e9", "#d55e00", "#cc79a7")
NO_KEY = "none"


@dataclass(frozen=True)
class Window:
    """The hours a page shows: [since, until), drawn per hour or per day."""

    since: datetime
    until: datetime
    bucket: str

    def starts(self) -> list[datetime]:
        step = timedelta(hours=1) if self.bucket == "hour" else timedelta(days=1)
        first = self.since if self.bucket == "hour" else _midnight(self.since)
        starts, current = [], first
        while current < self.until:
            starts.append(current)
            current += step
        return starts

    def label(self, start: datetime) -> str:
        return f"{start:%b %d %H:00}" if self.bucket == "hour" else f"{start:%b %d}"


def _now_hour_end() -> datetime:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return now + timedelta(hours=1)


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _window(since: datetime, until: datetime) -> Window:
    return Window(since, until, "hour" if until - since <= HOURLY_UP_TO else "day")


def default_preset() -> str:
    """The last 7 days, or on the first day of use the last 24 hours (7 days would squeeze it
    into one sliver at the right of each chart)."""
    first = selectors.first_usage_hour()
    if first is None or first >= _now_hour_end() - PRESETS["24h"]:
        return "24h"
    return DEFAULT_PRESET


def preset_window(preset: str) -> Window:
    until = _now_hour_end()
    return _window(until - PRESETS[preset], until)


class UsageFilterForm(forms.Form):
    """The date range (dates in UTC, both included; else a preset) and the model and key shown."""

    range = forms.ChoiceField(
        choices=list(PRESET_LABELS.items()), required=False, widget=forms.HiddenInput
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    model = forms.ChoiceField(required=False)
    key = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Both are the ChoiceFields declared above, which mypy knows only as form fields.
        self.fields["model"].choices = [("", "All models")] + [  # type: ignore[attr-defined]
            (name, name) for name in RegisteredModel.objects.values_list("name", flat=True)
        ]
        self.fields["key"].choices = [  # type: ignore[attr-defined]
            ("", "All keys"),
            (NO_KEY, "No key (playground, anonymous)"),
        ] + [
            (str(key.pk), str(key))
            for key in ApiKey.objects.only("name", "prefix").order_by("name", "pk")
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date comes before the start date.")
        elif since and until and (until - since).days > MAX_DAYS:
            self.add_error("since", f"Show at most {MAX_DAYS} days at once.")
        return data

    def window(self, default: str = DEFAULT_PRESET) -> Window:
        """The range asked for; the `default` preset when none (or an invalid one) was."""
        data = self.cleaned_data if self.is_valid() else {}
        since, until = data.get("since"), data.get("until")
        if not (since or until):
            preset = data.get("range")
            return preset_window(preset if preset in PRESETS else default)
        until_day = until or datetime.now(timezone.utc).date()
        since_day = since or until_day - timedelta(days=6)
        return _window(_day_start(since_day), _day_start(until_day) + timedelta(days=1))

    def filters(self) -> dict[str, Any]:
        """`selectors.list_usage` filters for the chosen model and key."""
        data = self.cleaned_data if self.is_valid() else {}
        filters: dict[str, Any] = {"model": data.get("model") or None}
        key = data.get("key")
        if key == NO_KEY:
            filters["without_key"] = True
        elif key:
            filters["key_id"] = int(key)
        return filters


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


# --- The data behind the charts ----------------------------------------------------------------


def _series_by_start(rows, window: Window, value, *, missing: float | None = 0) -> list:
    """One value per bucket of `window` (`missing` where nothing was used)."""
    by_start = {row["start"]: value(row) for row in rows}
    return [by_start.get(start, missing) for start in window.starts()]


def _average_latency(row: dict) -> float:
    return row["sum_latency_ms_sum"] / row["sum_requests"] if row["sum_requests"] else 0


def usage_charts(window: Window, filters: dict[str, Any]) -> dict[str, Any]:
    """Totals, four charts over time and the per-model and per-key tables (5 queries)."""
    query = {"since": window.since, "until": window.until, "bucket": window.bucket, **filters}
    over_time = list(selectors.list_usage(by=("start",), **query))
    per_model_time = list(selectors.list_usage(by=("start", "model"), **query))
    per_model = _ranked(selectors.list_usage(by=("model",), **query))
    per_key = _ranked(selectors.list_usage(by=("key",), **query))
    totals = selectors.usage_totals(**{k: v for k, v in query.items() if k != "bucket"})

    labels = [window.label(start) for start in window.starts()]
    top = [row["model_name"] for row in per_model[:TOP_MODELS]]
    request_series = [
        charts.Series(
            name,
            _series_by_start(
                (r for r in per_model_time if r["model_name"] == name),
                window,
                lambda r: r["sum_requests"],
            ),
            charts.colour(index),
        )
        for index, name in enumerate(top)
    ]
    if len(per_model) > TOP_MODELS:
        rest = [r for r in per_model_time if r["model_name"] not in top]
        by_start: dict[datetime, int] = {}
        for row in rest:
            by_start[row["start"]] = by_start.get(row["start"], 0) + row["sum_requests"]
        request_series.append(
            charts.Series(
                "other models",
                [by_start.get(start, 0) for start in window.starts()],
                charts.OTHER_COLOUR,
            )
        )
    token_series = [
        charts.Series(
            "prompt",
            _series_by_start(over_time, window, lambda r: r["sum_prompt_tokens"]),
            charts.colour(0),
        ),
        charts.Series(
            "completion",
            _series_by_start(over_time, window, lambda r: r["sum_completion_tokens"]),
            charts.colour(1),
        ),
    ]
    error_series = [
        charts.Series(
            kind.label,
            _series_by_start(over_time, window, lambda r, n=kind.counter: r[f"sum_{n}"]),
            colour,
        )
        for kind, colour in zip(ERROR_KINDS, ERROR_COLOURS, strict=True)
    ]
    # No requests, no latency: a gap in the line, not a fall to 0 ms.
    latency_series = [
        charts.Series(
            "average",
            _series_by_start(over_time, window, _average_latency, missing=None),
            "#0072b2",
        ),
        charts.Series(
            "slowest",
            _series_by_start(over_time, window, lambda r: r["max_latency_ms"], missing=None),
            "#d55e00",
        ),
    ]
    per = "hour" if window.bucket == "hour" else "day"
    return {
        "totals": _summary(totals),
        "charts": [
            _chart(f"Requests per {per}, by model", labels, request_series, unit=" requests"),
            _chart(f"Tokens per {per}", labels, token_series, unit=" tokens"),
            _chart(f"Errors per {per}, by kind", labels, error_series, unit=" errors"),
            _chart("Latency (ms)", labels, latency_series, unit=" ms", kind="lines"),
        ],
        "per_model": [_summary(row) for row in per_model],
        "per_key": [_summary(row) for row in per_key],
    }


def _ranked(rows) -> list[dict]:
    return sorted(rows, key=lambda row: (-row["sum_requests"], str(row.get("model_name"))))


def _chart(title: str, labels, series, *, unit: str, kind: str = "bars") -> dict[str, Any]:
    # Counts (requests, tokens, errors) have whole-number ticks; milliseconds need not.
    whole = unit != " ms"
    svg = charts.time_chart(labels, series, title=title, unit=unit, kind=kind, whole=whole)
    return {"title": title, "svg": mark_safe(svg), "legend": mark_safe(charts.legend(series))}


def _summary(row: dict) -> dict[str, Any]:
    """A row of sums as people read it."""
    requests = row["sum_requests"] or 0
    errors = row["sum_errors"] or 0
    prompt, completion = row["sum_prompt_tokens"] or 0, row["sum_completion_tokens"] or 0
    # Answers that counted no token at all: the model reports no usage (none is made up).
    reported = bool(prompt or completion) or requests == errors
    return {
        **row,
        "requests": requests,
        "requests_text": f"{requests:,}",
        "errors": f"{errors:,}",
        "error_rate": f"{errors / requests:.1%}" if requests else "—",
        "prompt_tokens": f"{prompt:,}" if reported else "not reported",
        "completion_tokens": f"{completion:,}" if reported else "not reported",
        "latency_avg": f"{_average_latency(row):.0f} ms" if requests else "—",
        "latency_max": f"{row['max_latency_ms'] or 0} ms" if requests else "—",
    }


# --- The pages ---------------------------------------------------------------------------------


def usage_page(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    form = UsageFilterForm(request.GET or None)
    default = default_preset()
    window = form.window(default)
    filters = form.filters()
    data = usage_charts(window, filters)
    shown = {name: value for name, value in request.GET.dict().items() if value}
    share = {name: value for name, value in shown.items() if name in ("model", "key")}
    for row in data["per_model"]:
        row["filter_url"] = "?" + urlencode({**shown, "model": row["model_name"]})
    for row in data["per_key"]:
        key = str(row["key_id"]) if row["key_id"] is not None else NO_KEY
        row["filter_url"] = "?" + urlencode({**shown, "key": key})
        if row["key_id"] is not None:
            row["admin_url"] = reverse("admin:chatmodels_apikey_change", args=[row["key_id"]])
    presets = [
        {
            "label": label,
            "url": "?" + urlencode({**share, "range": preset}),
            "active": not (shown.get("since") or shown.get("until"))
            and shown.get("range", default) == preset,
        }
        for preset, label in PRESET_LABELS.items()
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Usage",
        "subtitle": None,
        "form": form,
        "window": window,
        "last_day": window.until - timedelta(seconds=1),
        "presets": presets,
        "api_url": reverse("usage"),
        **data,
    }
    return TemplateResponse(request, "admin/chatmodels/usagebucket/usage.html", context)


def key_usage(key: ApiKey) -> dict[str, Any]:
    """The usage block of an API key's page: totals over three windows, two small charts."""
    until = _now_hour_end()
    month_start = _midnight(until - timedelta(hours=1)).replace(day=1)
    windows = (
        ("Last 24 hours", until - timedelta(hours=24)),
        ("Last 30 days", until - timedelta(days=30)),
        ("This month (UTC)", month_start),
    )
    totals = [
        {
            "label": label,
            **_summary(selectors.usage_totals(since=since, until=until, key_id=key.pk)),
        }
        for label, since in windows
    ]
    window = Window(_midnight(until - timedelta(days=30)), until, "day")
    rows = list(selectors.list_usage(by=("start",), key_id=key.pk, **_range(window)))
    labels = [window.label(start) for start in window.starts()]
    answered = charts.Series(
        "answered",
        _series_by_start(rows, window, lambda r: r["sum_requests"] - r["sum_errors"]),
        charts.colour(0),
    )
    errors = charts.Series(
        "errors", _series_by_start(rows, window, lambda r: r["sum_errors"]), "#d55e00"
    )
    tokens = charts.Series(
        "tokens",
        _series_by_start(
            rows, window, lambda r: r["sum_prompt_tokens"] + r["sum_completion_tokens"]
        ),
        charts.colour(1),
    )
    return {
        "totals": totals,
        "charts": [
            _chart("Requests per day, last 30 days", labels, [answered, errors], unit=""),
            _chart("Tokens per day, last 30 days", labels, [tokens], unit=" tokens"),
        ],
        "usage_url": reverse("admin:chatmodels_usagebucket_changelist")
        + "?"
        + urlencode({"key": str(key.pk), "range": "30d"}),
    }


def _range(window: Window) -> dict[str, Any]:
    return {"since": window.since, "until": window.until, "bucket": window.bucket}


@admin.register(UsageBucket)
class UsageAdmin(admin.ModelAdmin):
    """ "Usage" in the admin index: its list page is the usage charts; rows are never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return usage_page(request, model_admin=self)
