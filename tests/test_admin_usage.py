"""The admin's usage page (charts, totals, per model and per key, a date range) and the usage
block of an API key's page, rendered with data."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chatmodels.models import RegisteredModel, UsageBucket
from tests.helpers import make_key

pytestmark = pytest.mark.django_db

USAGE_URL = "/admin/chatmodels/usagebucket/"


def this_hour():
    return timezone.now().replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def data(db):
    echo = RegisteredModel.objects.create(name="echo")
    shout = RegisteredModel.objects.create(name="shout")
    alice, _ = make_key(name="alice")
    bob, _ = make_key(name="bob")
    now = this_hour()
    rows = [
        (echo, alice, 0, 30, 2),
        (echo, alice, 1, 20, 0),
        (echo, bob, 5, 7, 1),
        (shout, None, 2, 5, 0),
        (shout, alice, 24 * 20, 11, 0),  # 20 days ago: in "last 30 days" only
    ]
    for model, key, hours_ago, requests, errors in rows:
        UsageBucket.objects.create(
            model=model,
            version=1,
            api_key=key,
            hour=now - timedelta(hours=hours_ago),
            requests=requests,
            errors=errors,
            model_errors=errors,
            prompt_tokens=requests * 10,
            completion_tokens=requests * 3,
            latency_ms_sum=requests * 20,
            latency_ms_max=90,
        )
    return {"alice": alice, "bob": bob}


def text_of(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return re.sub(r"\s+", " ", response.content.decode())


def test_usage_is_linked_from_the_admin_index(admin_client):
    page = text_of(admin_client.get("/admin/"))
    assert f'<a href="{USAGE_URL}"' in page
    assert ">Usage</a>" in page


def test_the_usage_page_shows_totals_charts_and_tables_for_the_last_7_days(admin_client, data):
    page = text_of(admin_client.get(USAGE_URL))

    # Totals over the last 7 days: 30 + 20 + 7 + 5 requests, 3 errors.
    assert '<span class="cm-total-value">62</span><span class="cm-total-label">requests' in page
    assert "errors (4.8%)" in page
    assert '<span class="cm-total-value">620</span><span class="cm-total-label">prompt' in page
    assert '<span class="cm-total-value">186</span>' in page  # completion tokens
    assert '<span class="cm-total-value">20 ms</span>' in page
    # Four inline SVG charts, their legends, tooltips per bar; nothing loaded from elsewhere.
    assert page.count('<svg class="cm-chart"') == 4
    for title in ("Requests per hour, by model", "Tokens per hour", "Errors per hour, by kind"):
        assert f"<title>{title}</title>" in page
    assert "echo: 30 requests</title>" in page
    assert "· prompt: 300 tokens</title>" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # scripts, styles, links: all local
    assert '<a href="?range=24h">Last 24 hours</a>' in page
    assert 'class="cm-active" aria-current="true">Last 7 days</a>' in page
    # Per model and per key, most requests first, with links that filter the page.
    per_model = page.split("<h2>Per model</h2>")[1].split("</table>")[0]
    assert per_model.index(">echo</a>") < per_model.index(">shout</a>")
    per_key = page.split("<h2>Per API key</h2>")[1].split("</table>")[0]
    assert re.search(r'href="\?key=\d+" title="Show only this key">alice</a>', per_key)
    assert "no key</a>" in per_key
    assert f'href="/admin/chatmodels/apikey/{data["bob"].pk}/change/"' in per_key


def test_the_date_range_and_filters_change_what_is_shown(admin_client, data):
    month = text_of(admin_client.get(USAGE_URL + "?range=30d"))
    assert '<span class="cm-total-value">73</span>' in month  # the 20-day-old bucket too
    assert "Requests per day, by model" in month

    shout = text_of(admin_client.get(USAGE_URL + "?range=30d&model=shout"))
    assert '<span class="cm-total-value">16</span>' in shout

    bob = text_of(admin_client.get(USAGE_URL + f"?key={data['bob'].pk}"))
    assert '<span class="cm-total-value">7</span><span class="cm-total-label">requests' in bob

    keyless = text_of(admin_client.get(USAGE_URL + "?key=none"))
    assert '<span class="cm-total-value">5</span><span class="cm-total-label">requests' in keyless

    today = timezone.now().date()
    dates = text_of(
        admin_client.get(USAGE_URL + f"?since={today - timedelta(days=25)}&until={today}")
    )
    assert '<span class="cm-total-value">73</span>' in dates
    assert "per day" in dates


def test_the_range_is_written_in_utc_in_the_admins_date_format(admin_client, data, settings):
    settings.TIME_ZONE = "America/New_York"  # buckets are UTC hours, whatever the server's zone
    today = timezone.now().date()
    since = today - timedelta(days=2)

    html = text_of(admin_client.get(USAGE_URL + f"?since={since}&until={today}"))

    assert f"{since:%Y-%m-%d} 00:00 \N{EN DASH} {today:%Y-%m-%d} 23:59 UTC, per hour" in html


def test_bad_dates_are_explained_and_the_default_range_shown(admin_client, data):
    page = text_of(admin_client.get(USAGE_URL + "?since=2026-11-30&until=2026-11-01"))
    assert "The end date comes before the start date." in page
    assert '<span class="cm-total-value">62</span>' in page  # the last 7 days instead


def test_an_empty_range_says_so(admin_client, db):
    page = text_of(admin_client.get(USAGE_URL))
    assert page.count("nothing in this range") == 4
    assert "Nothing was used in this range." in page


def test_the_usage_page_takes_a_fixed_number_of_queries(
    admin_client, data, django_assert_max_num_queries
):
    for index in range(20):
        model = RegisteredModel.objects.create(name=f"more-{index}")
        UsageBucket.objects.create(model=model, version=1, hour=this_hour(), requests=1)
    # Session, user, the form's model and key choices, the first usage hour (the default range),
    # five usage queries.
    with django_assert_max_num_queries(10):
        page = text_of(admin_client.get(USAGE_URL))
    assert "other models" in page  # past the six busiest, models are stacked together


def test_on_the_first_day_the_page_shows_the_last_24_hours(admin_client, db):
    echo = RegisteredModel.objects.create(name="echo")
    UsageBucket.objects.create(
        model=echo, version=1, hour=this_hour() - timedelta(hours=3), requests=4, errors=1
    )

    page = text_of(admin_client.get(USAGE_URL))

    assert 'class="cm-active" aria-current="true">Last 24 hours</a>' in page
    assert "<title>Requests per hour, by model</title>" in page
    assert '<span class="cm-total-value">4</span><span class="cm-total-label">requests' in page


def test_count_charts_have_whole_number_ticks(admin_client, db):
    echo = RegisteredModel.objects.create(name="echo")
    UsageBucket.objects.create(
        model=echo, version=1, hour=this_hour(), requests=1, errors=1, model_errors=1
    )

    page = text_of(admin_client.get(USAGE_URL))

    errors_chart = page.split("<title>Errors per hour, by kind</title>")[1].split("</svg>")[0]
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', errors_chart)
    assert ticks == ["0", "1"]


def test_a_model_that_reports_no_usage_shows_not_reported_rather_than_0_tokens(admin_client, db):
    echo = RegisteredModel.objects.create(name="echo")
    UsageBucket.objects.create(model=echo, version=1, hour=this_hour(), requests=3)

    page = text_of(admin_client.get(USAGE_URL))

    per_model = page.split("<h2>Per model</h2>")[1].split("</table>")[0]
    assert per_model.count("not reported") == 2  # prompt and completion tokens


def test_an_api_key_page_shows_its_usage(admin_client, data):
    page = text_of(admin_client.get(f"/admin/chatmodels/apikey/{data['alice'].pk}/change/"))

    usage = page.split('id="usage"')[1]
    assert re.search(
        r"<th scope=\"row\">Last 24 hours</th><td>50</td><td>2 <span class=\"cm-muted\">\(4.0%\)",
        usage,
    )
    assert '<th scope="row">Last 30 days</th><td>61</td>' in usage
    assert usage.count('<svg class="cm-chart"') == 2
    assert "Requests per day, last 30 days" in usage
    assert f"?key={data['alice'].pk}&amp;range=30d" in usage


def test_a_new_key_page_has_no_usage_block(admin_client, db):
    page = text_of(admin_client.get("/admin/chatmodels/apikey/add/"))
    assert 'id="usage"' not in page
