"""The admin: listings, the read-only version page, aliases, API keys and the playground."""

from __future__ import annotations

import json
import re
from html import escape

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chatmodels import services, usage
from chatmodels.exceptions import ServerBusy
from chatmodels.models import ApiKey, ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.serving import capacity
from chatmodels.signature import signature_rows
from tests.api.calls import error_of, stream_events
from tests.helpers import copy_version, grow_registry, register
from tests.sample_models import (
    ParamsReportModel,
    StreamingModel,
    ToolRoundTripModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db

MODEL_LIST = reverse("admin:chatmodels_registeredmodel_changelist")
VERSION_LIST = reverse("admin:chatmodels_modelversion_changelist")
PLAYGROUND = reverse("admin:chatmodels_registeredmodel_playground")
PLAYGROUND_INVOKE = reverse("admin:chatmodels_registeredmodel_playground_invoke")


def version_url(version: ModelVersion) -> str:
    return reverse("admin:chatmodels_modelversion_change", args=[version.pk])


def model_url(model: RegisteredModel) -> str:
    return reverse("admin:chatmodels_registeredmodel_change", args=[model.pk])


def html_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --- registered models ---------------------------------------------------------------------


def test_site_header_is_chatmodels(admin_client):
    html = html_of(admin_client.get(reverse("admin:index")))
    assert "<title>Registry and serving | chatmodels</title>" in html
    assert ">chatmodels</a>" in html


def test_model_changelist_shows_names_latest_versions_aliases_and_tags(admin_client):
    register(name="echo", model=TriggerModel(), aliases=["staging"], tags={"team": "search"})
    register(name="echo", model=TriggerModel(), aliases=["prod"])
    register(name="summarizer", model=TriggerModel())

    html = html_of(admin_client.get(MODEL_LIST))

    assert ">echo</a>" in html
    assert ">summarizer</a>" in html
    assert '<span class="cm-pill cm-pill-alias">prod → v2</span>' in html
    assert '<span class="cm-pill cm-pill-alias">staging → v1</span>' in html
    assert '<span class="cm-pill cm-pill-tag">team=search</span>' in html
    latest = ModelVersion.objects.get(model__name="echo", version=2)
    assert f'<a href="{version_url(latest)}"><strong>v2</strong></a>' in html
    # Models come from registration, so the page explains how instead of offering "Add".
    assert "python manage.py register_model" in html
    assert reverse("admin:chatmodels_registeredmodel_add") not in html
    assert admin_client.get(reverse("admin:chatmodels_registeredmodel_add")).status_code == 403


def test_model_changelist_offers_try_beside_the_latest_version(admin_client):
    register(name="echo", model=TriggerModel())
    archived = register(name="retired", model=TriggerModel())
    ModelVersion.objects.filter(pk=archived.pk).update(status=ModelVersion.Status.ARCHIVED)

    html = html_of(admin_client.get(MODEL_LIST))

    cells = dict(
        re.findall(
            r'<th class="field-name"><a href="[^"]+">([^<]+)</a></th>'
            r'.*?<td class="field-latest_and_try_display">(.*?)</td>',
            html,
            re.S,
        )
    )
    assert f'href="{PLAYGROUND}?model=echo">Try&nbsp;▸</a>' in cells["echo"]
    assert "<strong>v1</strong>" in cells["echo"]
    assert cells["retired"] == "—"  # nothing ready to try
    # Columns the lists dropped to fit at 1,280 px, and the sidebar that took 280 px of it.
    assert "field-playground_display" not in html
    assert 'id="nav-sidebar"' not in html
    assert "field-model_link" not in html_of(admin_client.get(VERSION_LIST))


def test_model_changelist_shows_a_short_description(admin_client):
    register(name="echo", model=TriggerModel(), description="Echoes the last message.\nDemo.")
    register(name="long", model=TriggerModel(), description="word " * 40)

    html = html_of(admin_client.get(MODEL_LIST))

    assert 'title="Echoes the last message. Demo.">Echoes the last message. Demo.</span>' in html
    short = re.search(
        r'<span class="cm-description" title="[^"]+">([^<]+)</span>', html.split(">long</a>")[1]
    )
    assert short.group(1).endswith("…") and len(short.group(1)) == 80


def test_model_changelist_searches_tag_values_and_filters_on_aliases(admin_client):
    register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "search"})
    register(name="summarizer", model=TriggerModel(), tags={"team": "docs"})

    found = html_of(admin_client.get(MODEL_LIST, {"q": "docs"}))
    assert ">summarizer</a>" in found
    assert ">echo</a>" not in found

    with_aliases = html_of(admin_client.get(MODEL_LIST, {"has_aliases": "yes"}))
    assert ">echo</a>" in with_aliases
    assert ">summarizer</a>" not in with_aliases

    by_tag_key = html_of(admin_client.get(MODEL_LIST, {"tag": "team"}))
    assert ">echo</a>" in by_tag_key
    assert ">summarizer</a>" in by_tag_key


def test_model_change_page_lists_versions_read_only(admin_client):
    register(name="echo", model=TriggerModel())
    second = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(model_url(second.model)))

    assert f'<a href="{version_url(second)}"><strong>v2</strong></a>' in html
    assert second.digest[:12] in html
    assert 'name="name"' not in html  # the name is read-only after creation
    assert 'name="description"' in html
    assert 'name="versions-0-status"' not in html  # versions inline is read-only
    assert 'name="versions-0-DELETE"' not in html


def test_model_and_version_pages_offer_the_playground_with_the_same_button(admin_client):
    version = register(name="echo", model=TriggerModel())

    model_page = html_of(admin_client.get(model_url(version.model)))
    version_page = html_of(admin_client.get(version_url(version)))

    button = '<a class="cm-button" href="{}">Try it in the playground</a>'
    assert button.format(f"{PLAYGROUND}?model=echo") in model_page
    assert button.format(f"{PLAYGROUND}?model=echo&amp;version=1") in version_page


def test_model_description_is_editable(admin_client):
    version = register(name="echo", model=TriggerModel())
    data = change_form_data(version.model, description="Echoes the last message.")

    response = admin_client.post(model_url(version.model), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    version.model.refresh_from_db()
    assert version.model.description == "Echoes the last message."
    assert version.model.name == "echo"


def test_model_worker_settings_are_editable_and_checked(admin_client):
    version = register(name="echo", model=TriggerModel())
    url = model_url(version.model)

    saved = admin_client.post(
        url, change_form_data(version.model, worker_replicas="2", worker_memory_mb="256")
    )
    refused = admin_client.post(url, change_form_data(version.model, worker_replicas="0"))

    assert saved.status_code == 302
    version.model.refresh_from_db()
    assert (version.model.worker_replicas, version.model.worker_memory_mb) == (2, 256)
    assert refused.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in refused.content.decode()
    html = html_of(admin_client.get(url))
    assert "Worker memory limit (MiB)" in html and "Worker replicas" in html


def change_form_data(model: RegisteredModel, *, aliases=(), tags=(), **fields) -> dict:
    """POST data for the registered-model change form with its three inlines."""
    existing_aliases = list(model.aliases.order_by("name"))
    versions = model.versions.count()
    data = {
        "description": model.description,
        "worker_replicas": str(model.worker_replicas),
        "aliases-TOTAL_FORMS": str(len(aliases)),
        "aliases-INITIAL_FORMS": str(len(existing_aliases)),
        "tags-TOTAL_FORMS": str(len(tags)),
        "tags-INITIAL_FORMS": str(model.tags.count()),
        "versions-TOTAL_FORMS": str(versions),
        "versions-INITIAL_FORMS": str(versions),
        "_save": "Save",
        **fields,
    }
    for index, row in enumerate(aliases):
        for key, value in row.items():
            data[f"aliases-{index}-{key}"] = value
        data.setdefault(f"aliases-{index}-model", str(model.pk))
    for index, row in enumerate(tags):
        for key, value in row.items():
            data[f"tags-{index}-{key}"] = value
        data.setdefault(f"tags-{index}-model", str(model.pk))
    return data


def test_alias_inline_offers_only_this_models_versions(admin_client):
    first = register(name="echo", model=TriggerModel())
    second = register(name="echo", model=TriggerModel())
    other = register(name="summarizer", model=TriggerModel())

    html = html_of(admin_client.get(model_url(first.model)))

    # The empty form template carries the version choices.
    assert f'<option value="{first.pk}">v1</option>' in html
    assert f'<option value="{second.pk}">v2</option>' in html
    assert f'<option value="{other.pk}">' not in html


def test_alias_inline_refuses_a_version_of_another_model(admin_client):
    version = register(name="echo", model=TriggerModel())
    other = register(name="summarizer", model=TriggerModel())

    response = admin_client.post(
        model_url(version.model),
        change_form_data(
            version.model, aliases=[{"id": "", "name": "prod", "version": str(other.pk)}]
        ),
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_alias_inline_creates_then_moves_an_alias_through_the_service(admin_client, monkeypatch):
    first = register(name="echo", model=TriggerModel())
    second = register(name="echo", model=TriggerModel())
    model = first.model
    calls = []
    real_set_alias = services.set_alias

    def recording_set_alias(**kwargs):
        calls.append(kwargs)
        return real_set_alias(**kwargs)

    monkeypatch.setattr(services, "set_alias", recording_set_alias)

    created = admin_client.post(
        model_url(model),
        change_form_data(model, aliases=[{"id": "", "name": "prod", "version": str(first.pk)}]),
    )
    assert created.status_code == 302, created.content.decode()[:3000]
    assert ModelAlias.objects.get(model=model, name="prod").version_id == first.pk

    alias = ModelAlias.objects.get(model=model, name="prod")
    moved = admin_client.post(
        model_url(model),
        change_form_data(
            model, aliases=[{"id": str(alias.pk), "name": "prod", "version": str(second.pk)}]
        ),
    )
    assert moved.status_code == 302, moved.content.decode()[:3000]
    assert ModelAlias.objects.get(model=model, name="prod").version_id == second.pk
    assert calls == [
        {"name": "echo", "alias": "prod", "version": 1},
        {"name": "echo", "alias": "prod", "version": 2},
    ]


def test_alias_inline_deletes_an_alias(admin_client):
    version = register(name="echo", model=TriggerModel(), aliases=["prod"])
    alias = ModelAlias.objects.get(model=version.model, name="prod")
    data = change_form_data(
        version.model,
        aliases=[{"id": str(alias.pk), "name": "prod", "version": str(version.pk), "DELETE": "on"}],
    )

    response = admin_client.post(model_url(version.model), data)

    assert response.status_code == 302
    assert not ModelAlias.objects.filter(model=version.model).exists()


def test_alias_named_latest_is_refused_with_a_form_error(admin_client):
    version = register(name="echo", model=TriggerModel())
    data = change_form_data(
        version.model, aliases=[{"id": "", "name": "latest", "version": str(version.pk)}]
    )

    response = admin_client.post(model_url(version.model), data)

    assert response.status_code == 200
    assert "is reserved" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_tags_are_editable_inline(admin_client):
    version = register(name="echo", model=TriggerModel())
    data = change_form_data(
        version.model, tags=[{"id": "", "key": "owner", "value": "platform-team"}]
    )

    response = admin_client.post(model_url(version.model), data)

    assert response.status_code == 302
    tag = ModelTag.objects.get(model=version.model)
    assert (tag.key, tag.value) == ("owner", "platform-team")


# --- versions ------------------------------------------------------------------------------


def test_version_changelist_shows_versions_aliases_and_digests(admin_client):
    register(name="echo", model=TriggerModel())
    second = register(name="echo", model=TriggerModel(), aliases=["prod"])

    html = html_of(admin_client.get(VERSION_LIST))

    assert ">echo/2</a>" in html
    assert ">echo/1</a>" in html
    assert '<span class="cm-pill cm-pill-alias">prod</span>' in html
    assert f"{second.digest[:12]}…" in html
    assert '<span class="cm-status cm-status-ready">ready</span>' in html

    filtered = html_of(
        admin_client.get(VERSION_LIST, {"status__exact": ModelVersion.Status.ARCHIVED})
    )
    assert ">echo/2</a>" not in filtered


VERSION_PAGE_SECTIONS = (
    "input-example",
    "call",
    "source-code",
    "artifacts",
    "model-config",
    "environment",
    "signature",
)


def test_version_page_shows_what_differs_first_and_the_shared_signature_last(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    positions = [html.index(f'id="{section}"') for section in VERSION_PAGE_SECTIONS]
    assert positions == sorted(positions)
    # The digest (package fieldset) comes before all of them.
    assert html.index(version.digest) < positions[0]


def test_version_page_says_the_signature_is_shared_and_folds_its_tables(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    signature = html[html.index('id="signature"') :]
    assert "the same for every version of every ChatModel" in signature
    inputs = len(version.signature["inputs"]["properties"])
    outputs = len(version.signature["outputs"]["properties"])
    assert f"request in ({inputs} fields)" in signature
    assert f"<code>chat.completion</code> out ({outputs} fields)" in signature
    folded = re.search(r'<details class="cm-signature-details">(.*?)</details>', signature, re.S)
    assert folded, signature[:2000]
    assert "<h3>Inputs</h3>" in folded.group(1)
    assert "<h3>Outputs</h3>" in folded.group(1)
    assert '<span class="cm-field-name">messages</span>' in folded.group(1)


def test_version_page_opens_a_signature_that_differs_from_the_standard_one(admin_client):
    version = register(name="echo", model=TriggerModel())
    older = {**version.signature, "inputs": {**version.signature["inputs"], "properties": {}}}
    ModelVersion.objects.filter(pk=version.pk).update(signature=older)

    html = html_of(admin_client.get(version_url(version)))

    assert "differs from the ChatModel signature of this release" in html
    assert '<details class="cm-signature-details" open>' in html


def test_version_page_shows_signature_tables(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    for field in ("messages", "role", "content", "temperature", "max_tokens", "choices", "usage"):
        assert f'<span class="cm-field-name">{field}</span>' in html, field
    assert (
        '<span class="cm-field-parent">messages[].</span><span class="cm-field-name">role' in html
    )
    for side in ("inputs", "outputs"):
        for row in signature_rows(version.signature[side]):
            assert f'<code class="cm-type">{escape(row.type, quote=False)}</code>' in html or (
                f'<code class="cm-type">{escape(row.type)}</code>' in html
            ), row
    rows = signature_rows(version.signature["inputs"]) + signature_rows(
        version.signature["outputs"]
    )
    required = sum(row.required and not row.required_in for row in rows)
    assert html.count('<span class="cm-required">required</span>') == required
    # A content part's own fields are required in that kind of part, not all together.
    assert ">in TextContentPart</span>" in html and ">in ImageContentPart</span>" in html
    assert "<h3>Inputs</h3>" in html
    assert "<h3>Outputs</h3>" in html


def signature_row(html: str, field: str) -> str:
    match = re.search(rf'<span class="cm-field-name">{field}</span>.*?</tr>', html, re.S)
    assert match, field
    return match.group(0)


def test_version_page_shows_defaults_as_people_write_them(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    assert "<code>1.0</code>" in signature_row(html, "temperature")
    assert "<code>false</code>" in signature_row(html, "stream")
    assert "<code>null</code>" in signature_row(html, "max_tokens")
    assert '<span class="cm-muted">—</span>' in signature_row(html, "messages")
    assert "<code>&quot;&quot;</code>" not in html
    assert "<code>&quot;" not in signature_row(html, "temperature")


def reversed_keys(value):
    """The same JSON with every object's keys in reverse order, as PostgreSQL's jsonb may give."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


def test_version_page_keeps_schema_order_whatever_order_the_database_returns(admin_client):
    version = register(name="echo", model=TriggerModel())
    expected_example = json.dumps(version.input_example, indent=2)
    ModelVersion.objects.filter(pk=version.pk).update(
        signature=reversed_keys(version.signature),
        input_example=reversed_keys(version.input_example),
    )

    html = html_of(admin_client.get(version_url(version)))

    assert escape(expected_example) in html  # messages first, role before content
    fields = re.findall(r'<span class="cm-field-name">([^<]+)</span>', html)
    assert fields.index("messages") < fields.index("temperature") < fields.index("tools")
    assert fields.index("role") < fields.index("content")


def test_version_page_lists_python_once_in_the_environment(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    assert html.count("<tr><td><code>python</code></td>") == 1
    assert f"<code>{version.python_version}</code>" in html


def test_version_page_pretty_prints_the_input_example(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    pretty = json.dumps(version.input_example, indent=2, ensure_ascii=False)
    assert escape(pretty) in html
    assert "&quot;content&quot;: &quot;Hello!&quot;" in html
    assert "\n  &quot;messages&quot;: [\n    {\n      &quot;role&quot;: &quot;user&quot;" in html


def test_version_page_shows_package_code_and_environment_read_only(admin_client):
    version = register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(version_url(version)))

    assert version.digest in html
    assert version.package.name in html
    assert version.python_version in html
    for package, package_version in version.package_versions.items():
        assert (
            f"<code>{escape(package)}</code></td><td><code>{escape(package_version)}</code>" in html
        )
    if version.source_code:
        assert escape(version.source_code.splitlines()[0]) in html
    assert 'type="file"' not in html
    assert 'name="digest"' not in html
    assert 'name="signature"' not in html
    assert 'name="status"' in html  # the one editable field
    assert "/api/models/echo/invocations?version=1" in html
    assert "Authorization: Bearer $KEY" in html
    assert f"{PLAYGROUND}?model=echo&amp;version=1" in html
    assert (
        "Delete"
        not in re.sub(r"<script.*?</script>", "", html, flags=re.S).split('class="submit-row"')[-1][
            :2000
        ]
    )


def created_text_in_list(html: str, version: ModelVersion) -> str:
    """The `created` cell of the version's row in the versions change list."""
    row = next(row for row in html.split("<tr")[1:] if f">{version}</a>" in row)
    return re.search(r'<td class="field-created"><time [^>]*>([^<]*)</time>', row).group(1)


def created_text_on_page(html: str) -> str:
    """The read-only `Created at` field of a version page."""
    field = html.split("field-created_at", 1)[1]
    return re.search(r'<div class="readonly">([^<]*)</div>', field).group(1)


def test_version_page_and_versions_list_show_the_same_date_format(admin_client):
    version = register(name="echo", model=TriggerModel())

    listed = created_text_in_list(html_of(admin_client.get(VERSION_LIST)), version)
    on_page = created_text_on_page(html_of(admin_client.get(version_url(version))))

    assert listed == on_page == timezone.localtime(version.created_at).strftime("%Y-%m-%d %H:%M")


def test_version_page_shows_every_line_of_the_source(admin_client):
    version = register(name="echo", model="examples/echo.py:EchoModel")
    lines = version.source_code.splitlines()

    html = html_of(admin_client.get(version_url(version)))

    source = html.split('<pre class="cm-code cm-source">', 1)[1].split("</pre>", 1)[0]
    shown = re.findall(r'<span class="cm-line">(.*?)</span>', source)
    assert shown == [escape(line) for line in lines]
    assert f'<span class="cm-line">{escape(lines[-1])}</span>' in html
    assert f"{len(lines)} lines" in html


def test_version_page_lists_artifacts_and_model_config(admin_client, tmp_path):
    from tests.sample_models import ConfiguredModel

    greeting = tmp_path / "greeting.txt"
    greeting.write_text("hello from the artifact\n")
    version = register(
        name="configured",
        model=ConfiguredModel(),
        artifacts={"greeting": str(greeting)},
        model_config={"prefix": "> ", "nested": {"depth": 2}},
    )

    html = html_of(admin_client.get(version_url(version)))

    assert "<code>greeting</code>" in html
    assert version.artifacts["greeting"]["sha256"] in html
    # Keys sorted, as in the package's manifest, whichever database stored them.
    assert escape(json.dumps(version.model_config, indent=2, sort_keys=True)) in html


def test_posting_a_changed_digest_changes_nothing_but_status(admin_client):
    version = register(name="echo", model=TriggerModel())
    original = {name: getattr(version, name) for name in ("digest", "version", "signature")}

    response = admin_client.post(
        version_url(version),
        {
            "status": ModelVersion.Status.ARCHIVED,
            "digest": "0" * 64,
            "version": "99",
            "signature": "{}",
            "source_code": "import os",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.ARCHIVED
    assert version.digest == original["digest"]
    assert version.version == original["version"]
    assert version.signature == original["signature"]
    assert version.source_code != "import os"


def test_version_status_can_go_back_to_ready(admin_client):
    version = register(name="echo", model=TriggerModel())
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ARCHIVED)

    response = admin_client.post(
        version_url(version), {"status": ModelVersion.Status.READY, "_save": "Save"}
    )

    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.READY


def test_versions_cannot_be_added_or_deleted_in_the_admin(admin_client):
    version = register(name="echo", model=TriggerModel())

    assert admin_client.get(reverse("admin:chatmodels_modelversion_add")).status_code == 403
    delete_url = reverse("admin:chatmodels_modelversion_delete", args=[version.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert ModelVersion.objects.filter(pk=version.pk).exists()


# --- query counts --------------------------------------------------------------------------


def count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries)


KEY_LIST = reverse("admin:chatmodels_apikey_changelist")


@pytest.mark.parametrize("url", [MODEL_LIST, VERSION_LIST, KEY_LIST])
def test_changelist_query_count_does_not_grow_with_the_registry(
    admin_client, url, django_assert_num_queries
):
    source = register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "a"})
    register(name="other", model=TriggerModel())
    services.create_api_key(name="first", models=["echo"])
    admin_client.get(url)  # warm the session and content types
    small = count_queries(admin_client, url)

    grow_registry(source, models=20, versions=3)
    for index in range(20):
        services.create_api_key(
            name=f"key-{index}", models=["echo", f"grown-{index:02d}"][: index % 3]
        )
    assert RegisteredModel.objects.count() == 22
    with django_assert_num_queries(small):
        assert admin_client.get(url).status_code == 200


def test_model_page_query_count_does_not_grow_with_versions_aliases_and_tags(
    admin_client, django_assert_num_queries
):
    source = register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "a"})
    url = model_url(source.model)
    admin_client.get(url)
    small = count_queries(admin_client, url)

    for number in range(2, 12):
        version = copy_version(source, model=source.model, number=number)
        ModelAlias.objects.create(model=source.model, name=f"canary-{number}", version=version)
        ModelTag.objects.create(model=source.model, key=f"key-{number}", value="x")
    with django_assert_num_queries(small):
        html = html_of(admin_client.get(url))
    assert html.count('<option value="') >= 11 * 12  # every alias row offers every version


# --- API keys ------------------------------------------------------------------------------


def test_api_key_is_created_in_the_admin_and_shown_once(admin_client):
    version = register(name="echo", model=TriggerModel())

    response = admin_client.post(
        reverse("admin:chatmodels_apikey_add"),
        {"name": "ci-pipeline", "allowed_models": [str(version.model.pk)], "_save": "Save"},
        follow=True,
    )

    html = html_of(response)
    match = re.search(r'<code class="cm-secret" id="cm-new-api-key">([^<]+)</code>', html)
    assert match, html
    raw_key = match.group(1)
    key = ApiKey.objects.get(name="ci-pipeline")
    assert key.key_hash == ApiKey.hash_key(raw_key)
    assert raw_key.startswith(key.prefix)
    assert list(key.allowed_models.values_list("name", flat=True)) == ["echo"]
    assert raw_key not in {key.name, key.prefix, key.key_hash}

    # Never shown again: not on the list, not on the key's page.
    assert raw_key not in html_of(admin_client.get(reverse("admin:chatmodels_apikey_changelist")))
    change_page = html_of(
        admin_client.get(reverse("admin:chatmodels_apikey_change", args=[key.pk]))
    )
    assert raw_key not in change_page
    assert key.key_hash not in change_page
    assert f"<code>{key.prefix}…</code>" in change_page


def test_key_page_says_how_to_choose_models_without_ctrl_click(admin_client):
    html = html_of(admin_client.get(reverse("admin:chatmodels_apikey_add")))

    assert "Models this key may call. Empty: all models." in html
    assert "Hold down" not in html  # the chooser's arrows pick models, not Control-click


def test_new_api_key_page_has_a_copy_button_for_the_key(admin_client):
    response = admin_client.post(
        reverse("admin:chatmodels_apikey_add"), {"name": "laptop", "_save": "Save"}, follow=True
    )

    html = html_of(response)
    key = re.search(r'<code class="cm-secret" id="cm-new-api-key">([^<]+)</code>(.*?)</li>', html)
    assert key, html
    assert ApiKey.objects.get(name="laptop").key_hash == ApiKey.hash_key(key.group(1))
    # The button copies the element holding the key, with the script that copies it.
    assert (
        '<button type="button" class="button cm-copy" data-copy-target="cm-new-api-key">Copy'
        in key.group(2)
    )
    assert '<script src="/static/chatmodels/copy.js"></script>' in html
    # "Save and continue editing" shows it on the key's own page, with the same button.
    again = admin_client.post(
        reverse("admin:chatmodels_apikey_add"),
        {"name": "desktop", "_continue": "Save and continue editing"},
        follow=True,
    )
    assert 'data-copy-target="cm-new-api-key"' in html_of(again)
    assert "chatmodels/copy.js" in html_of(again)


def test_api_key_changelist_shows_prefix_models_and_state(admin_client):
    version = register(name="echo", model=TriggerModel())
    key, _ = services.create_api_key(name="limited", models=["echo"])
    everything, _ = services.create_api_key(name="everything")

    html = html_of(admin_client.get(reverse("admin:chatmodels_apikey_changelist")))

    assert ">limited</a>" in html
    assert f"<code>{key.prefix}…</code>" in html
    assert '<span class="cm-pill">echo</span>' in html
    assert "all models" in html
    assert key.key_hash not in html
    assert everything.key_hash not in html
    assert version.model.name in html


def test_revoke_action_revokes_selected_keys(admin_client):
    kept, _ = services.create_api_key(name="kept")
    revoked, _ = services.create_api_key(name="revoked")

    response = admin_client.post(
        reverse("admin:chatmodels_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [str(revoked.pk)]},
        follow=True,
    )

    assert "Revoked 1 key." in html_of(response)
    revoked.refresh_from_db()
    kept.refresh_from_db()
    assert revoked.revoked_at is not None
    assert kept.revoked_at is None


def _used_key(client, name: str) -> ApiKey:
    """A key that has made one chat request, its usage written to the database."""
    register(name="echo", model=TriggerModel())
    key, raw = services.create_api_key(name=name)
    usage.discard()
    response = client.post(
        "/api/models/echo/invocations",
        {"messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200, response.content
    usage.flush()
    return key


def test_a_used_key_page_offers_revoke_instead_of_delete(admin_client, client):
    key = _used_key(client, "used")
    page = reverse("admin:chatmodels_apikey_change", args=[key.pk])

    html = html_of(admin_client.get(page))

    assert "Revoke this key" in html
    assert "A key that has been used cannot be deleted: revoke it" in html
    assert reverse("admin:chatmodels_apikey_delete", args=[key.pk]) not in html
    assert (
        admin_client.get(reverse("admin:chatmodels_apikey_delete", args=[key.pk])).status_code
        == 403
    )

    revoked = admin_client.post(
        reverse("admin:chatmodels_apikey_revoke", args=[key.pk]), follow=True
    )

    assert "API key “used” revoked" in html_of(revoked)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "Revoke this key" not in html_of(revoked)
    assert "Revoked: requests with this key are refused." in html_of(revoked)


def test_deleting_used_keys_in_bulk_points_to_revoke_and_deletes_nothing(admin_client, client):
    used = _used_key(client, "used")
    unused, _ = services.create_api_key(name="unused")

    response = admin_client.post(
        KEY_LIST,
        {"action": "delete_selected", "_selected_action": [str(used.pk), str(unused.pk)]},
        follow=True,
    )

    html = html_of(response)
    assert "Not deleted: “used” has recorded usage. Revoke a used key instead" in html
    assert "permission" not in html
    assert ApiKey.objects.filter(pk__in=[used.pk, unused.pk]).count() == 2


def test_an_unused_key_is_deleted_after_django_s_confirmation(admin_client):
    unused, _ = services.create_api_key(name="unused")
    form = {"action": "delete_selected", "_selected_action": [str(unused.pk)]}

    confirmation = admin_client.post(KEY_LIST, form)

    assert "Are you sure" in html_of(confirmation)
    admin_client.post(KEY_LIST, {**form, "post": "yes"}, follow=True)
    assert not ApiKey.objects.filter(pk=unused.pk).exists()


# --- playground ----------------------------------------------------------------------------


def test_playground_page_renders_models_versions_and_aliases(admin_client):
    register(name="echo", model=TriggerModel())
    register(name="echo", model=TriggerModel(), aliases=["prod"])
    ModelVersion.objects.filter(model__name="echo", version=1).update(
        status=ModelVersion.Status.ARCHIVED
    )

    html = html_of(admin_client.get(PLAYGROUND, {"model": "echo", "version": "1"}))

    assert 'id="cm-playground-form"' in html
    assert "csrfmiddlewaretoken" in html
    assert "chatmodels/playground.js" in html
    config = json.loads(
        re.search(
            r'<script id="cm-playground-config" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    (echo,) = config["models"]
    assert echo["name"] == "echo"
    assert echo["latest"] == 2
    assert [v["version"] for v in echo["versions"]] == [2, 1]
    assert [v["label"] for v in echo["versions"]] == ["v2", "v1 (archived)"]
    assert echo["aliases"] == {"prod": 2}
    assert config["selected"] == {"model": "echo", "version": "1", "alias": ""}
    assert config["invokeUrl"] == PLAYGROUND_INVOKE


def invoke(client, **body):
    return client.post(PLAYGROUND_INVOKE, json.dumps(body), content_type="application/json")


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def staff_error_of(response, status: int) -> tuple[dict, str | None]:
    """The playground's error: OpenAI's error object, and the model's exception (for staff)."""
    body = response.json()
    detail = body["error"].pop("detail", None)
    response.content = json.dumps(body).encode()
    return error_of(response, status), detail


def reply_of(events: list) -> str:
    """The assistant's text: every chunk's `choices[0].delta.content`, joined."""
    return "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in events
        if chunk != "[DONE]" and chunk.get("choices")
    )


def test_playground_invoke_streams_the_reply_as_chunks(admin_client):
    register(name="echo", model=TriggerModel())
    register(name="echo", model=TriggerModel(), aliases=["prod"])

    response = invoke(
        admin_client,
        model="echo",
        alias="prod",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        temperature=0.2,
        max_tokens=20,
    )

    assert response.streaming
    assert "no-cache" in response["Cache-Control"]
    events = stream_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    # Each chunk names the version that answered (the alias's), which the page shows and links.
    assert {chunk["model"] for chunk in chunks} == {"echo/2"}
    assert reply_of(events) == "hi there"
    assert chunks[-1]["choices"] == []  # the usage chunk: the page shows the token count
    assert chunks[-1]["usage"]["total_tokens"] == 2

    pinned = stream_events(invoke(admin_client, model="echo", version=1, messages=user("v1?")))
    assert {chunk["model"] for chunk in pinned[:-1]} == {"echo/1"}
    latest = stream_events(invoke(admin_client, model="echo", version="", messages=user("x")))
    assert {chunk["model"] for chunk in latest[:-1]} == {"echo/2"}


def test_playground_invoke_streams_a_streaming_model_word_by_word(admin_client):
    register(name="words", model=StreamingModel())

    events = stream_events(invoke(admin_client, model="words", messages=user("one two three")))

    assert events[-1] == "[DONE]"
    contents = [
        chunk["choices"][0]["delta"].get("content") for chunk in events[:-1] if chunk["choices"]
    ]
    assert contents == ["one ", "two ", "three ", None]
    assert reply_of(events) == "one two three "
    finish = [c["choices"][0].get("finish_reason") for c in events[:-1] if c["choices"]]
    assert finish[-1] == "stop"


def test_playground_invoke_sends_an_error_event_when_the_model_fails_mid_stream(admin_client):
    register(name="words", model=StreamingModel())

    events = stream_events(invoke(admin_client, model="words", messages=user("raise now")))

    assert events[0]["choices"][0]["delta"]["content"] == "raise "
    error = events[-1]["error"]  # no [DONE]: the answer is incomplete
    assert error["type"] == "server_error"
    assert "stream broke" not in error["message"]  # no internals leak to the page


def test_playground_invoke_reports_errors_as_openai_error_objects(admin_client):
    register(name="echo", model=TriggerModel())

    raised, _detail = staff_error_of(
        invoke(admin_client, model="echo", messages=user("raise")), 500
    )
    assert raised["code"] == "model_error"
    assert "/etc/passwd" not in raised["message"]  # the message is the API's

    garbage = error_of(invoke(admin_client, model="echo", messages=user("garbage")), 502)
    assert garbage["code"] == "invalid_model_output"

    bad_input = error_of(invoke(admin_client, model="echo", messages=[{"role": 5}]), 400)
    assert "role" in bad_input["message"]

    unknown = error_of(invoke(admin_client, model="nope", messages=user("hi")), 404)
    assert unknown["code"] == "model_not_found"

    no_version = error_of(invoke(admin_client, model="echo", version=7, messages=user("hi")), 404)
    assert no_version["code"] == "version_not_found"

    bad_version = error_of(
        invoke(admin_client, model="echo", version="x", messages=user("hi")), 400
    )
    assert bad_version["param"] == "version"

    no_alias = error_of(invoke(admin_client, model="echo", alias="prod", messages=user("hi")), 404)
    assert no_alias["code"] == "alias_not_found"

    no_model = error_of(invoke(admin_client, messages=user("hi")), 400)
    assert no_model["param"] == "model"

    not_json = admin_client.post(PLAYGROUND_INVOKE, "{", content_type="application/json")
    assert error_of(not_json, 400)["type"] == "invalid_request_error"

    not_object = admin_client.post(PLAYGROUND_INVOKE, "[]", content_type="application/json")
    error_of(not_object, 400)


def test_playground_shows_staff_what_the_model_raised_before_and_during_a_stream(admin_client):
    register(name="echo", model=TriggerModel())
    register(name="words", model=StreamingModel())

    before, cause = staff_error_of(invoke(admin_client, model="echo", messages=user("raise")), 500)
    during = stream_events(invoke(admin_client, model="words", messages=user("raise now")))[-1]

    assert before["code"] == "model_error"
    assert before["message"] == "model echo/1 raised an error while answering"
    # The exception, and where in the author's code: sample_models.py, the line that raised.
    assert cause.startswith("RuntimeError: secret internal detail /etc/passwd at sample_models.py:")
    assert cause.endswith('`raise RuntimeError("secret internal detail /etc/passwd")`')
    assert during["error"]["message"] == "model words/1 raised an error while streaming"
    assert during["error"]["detail"].startswith("RuntimeError: stream broke at sample_models.py:")


def test_an_api_client_never_sees_what_the_model_raised(client):
    register(name="echo", model=TriggerModel())
    _key, raw = services.create_api_key(name="app")

    response = client.post(
        "/api/models/echo/invocations",
        {"messages": user("raise")},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )

    error = error_of(response, 500)
    assert "detail" not in error and "/etc/passwd" not in response.content.decode()


def test_a_model_without_predict_stream_that_raises_is_said_to_raise_while_answering(
    admin_client,
):
    register(name="echo", model=TriggerModel())

    # The page streams by default: predict runs, and raises before the stream begins.
    error, _cause = staff_error_of(invoke(admin_client, model="echo", messages=user("raise")), 500)

    assert error["message"] == "model echo/1 raised an error while answering"


def test_playground_answers_without_streaming_and_sends_tools_and_custom_inputs(admin_client):
    register(name="report", model=ParamsReportModel())
    tools = [{"type": "function", "function": {"name": "get_weather"}}]

    response = invoke(
        admin_client,
        model="report",
        messages=user("weather?"),
        stream=False,
        tools=tools,
        custom_inputs={"session": "s1"},
    )

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    completion = response.json()
    assert completion["object"] == "chat.completion" and completion["model"] == "report/1"
    params = json.loads(completion["choices"][0]["message"]["content"])["params"]
    assert params["stream"] is False
    assert [tool["function"]["name"] for tool in params["tools"]] == ["get_weather"]
    assert params["custom_inputs"] == {"session": "s1"}


def test_playground_sends_a_tool_calls_result_back_to_the_model(admin_client):
    register(name="weather", model=ToolRoundTripModel())
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    asked = user("Paris")

    events = stream_events(invoke(admin_client, model="weather", messages=asked, tools=tools))
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    [head] = deltas[0]["tool_calls"]
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:3])

    # What the page sends next: the call it pieced together from the stream, and its result.
    call = {"id": head["id"], "type": "function"}
    call["function"] = {"name": head["function"]["name"], "arguments": arguments}
    conversation = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": head["id"], "content": "18 C, sunny"},
    ]
    answer = invoke(admin_client, model="weather", messages=conversation, tools=tools, stream=False)

    assert (head["id"], call["function"]) == (
        "call_rt_1",
        {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    )
    assert answer.json()["choices"][0]["message"]["content"] == "The tool said: 18 C, sunny"


def test_playground_page_has_a_prompt_for_tool_results(admin_client):
    register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(reverse("admin:chatmodels_registeredmodel_playground")))

    assert 'id="cm-tool-prompt"' in html and "Reply as the user instead" in html


def test_playground_page_offers_streaming_tools_and_custom_inputs(admin_client):
    register(name="echo", model=TriggerModel())

    html = html_of(admin_client.get(reverse("admin:chatmodels_registeredmodel_playground")))

    assert 'id="cm-stream"' in html and "checked" in html.split('id="cm-stream"', 1)[1][:40]
    assert 'id="cm-tools"' in html and 'id="cm-custom-inputs"' in html


def test_playground_invoke_answers_503_with_retry_after_past_capacity(admin_client, monkeypatch):
    register(name="echo", model=TriggerModel())

    def busy(**kwargs):
        raise ServerBusy("busy", retry_after=3)

    monkeypatch.setattr(capacity, "acquire", busy)
    response = invoke(admin_client, model="echo", messages=user("hi"))

    assert error_of(response, 503)["code"] == "server_busy"
    assert response["Retry-After"] == "3"


def test_playground_is_staff_only_and_csrf_protected(admin_user, django_user_model):
    register(name="echo", model=TriggerModel())
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})

    anonymous = Client()
    assert anonymous.get(PLAYGROUND).status_code == 302
    assert (
        anonymous.post(PLAYGROUND_INVOKE, body, content_type="application/json").status_code == 302
    )

    member = django_user_model.objects.create_user("member", password="x", is_staff=False)
    not_staff = Client()
    not_staff.force_login(member)
    assert not_staff.get(PLAYGROUND).status_code == 302
    refused = not_staff.post(PLAYGROUND_INVOKE, body, content_type="application/json")
    assert refused.status_code == 302
    assert refused["Location"].startswith(reverse("admin:login"))

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(PLAYGROUND_INVOKE, body, content_type="application/json").status_code == 403
    strict.get(PLAYGROUND)  # sets the CSRF cookie
    token = strict.cookies["csrftoken"].value
    allowed = strict.post(
        PLAYGROUND_INVOKE, body, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert stream_events(allowed)[-1] == "[DONE]"


def test_invoking_from_the_playground_needs_the_invoke_model_permission(django_user_model):
    register(name="echo", model=TriggerModel())
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_registeredmodel"))
    browser = Client()
    browser.force_login(viewer)

    assert browser.get(PLAYGROUND).status_code == 200  # viewing is enough to see the page
    refused = browser.post(PLAYGROUND_INVOKE, body, content_type="application/json")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "permission_denied"
    assert "Can invoke models" in error["message"]
    assert not ApiKey.objects.filter(playground_user=viewer).exists()

    viewer.user_permissions.add(Permission.objects.get(codename="invoke_model"))
    browser.force_login(django_user_model.objects.get(pk=viewer.pk))  # permissions re-read
    allowed = browser.post(PLAYGROUND_INVOKE, body, content_type="application/json")
    assert stream_events(allowed)[-1] == "[DONE]"
    assert ApiKey.objects.filter(playground_user=viewer).count() == 1


def _log_in(browser: Client, username: str, password: str, address: str):
    return browser.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_admin_logins_are_throttled_per_address_and_per_username(
    admin_user, django_user_model, settings
):
    settings.CHATMODELS_LOGIN_ATTEMPTS_PER_MINUTE = 3
    browser = Client()
    django_user_model.objects.create_user("other", password="right", is_staff=True)

    # From one address: three attempts are checked, the fourth is refused unchecked (even with
    # the right password), with a message saying when to retry.
    for _ in range(3):
        assert _log_in(browser, "other", "wrong", "192.0.2.1").status_code == 200
    refused = _log_in(browser, "other", "right", "192.0.2.1")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "Too many login attempts from this address; try again in" in refused.content.decode()
    assert "_auth_user_id" not in browser.session

    # One username from many addresses (a botnet guessing one password): refused as well.
    for n in range(3):
        assert _log_in(browser, admin_user.username, "wrong", f"198.51.100.{n}").status_code == 200
    refused = _log_in(browser, admin_user.username, "password", "198.51.100.9")
    assert refused.status_code == 429
    assert "Too many login attempts for this username" in refused.content.decode()

    # Another user from another address is not held up.
    django_user_model.objects.create_user("third", password="right", is_staff=True)
    assert _log_in(browser, "third", "right", "203.0.113.5").status_code == 302


# --- the landing page at / (the admin's "View site") -------------------------------------------


def test_landing_page_links_the_admin_the_api_docs_and_the_health_endpoints(client):
    response = client.get("/")

    html = html_of(response)
    assert response["Content-Type"].startswith("text/html")
    for name in (
        "admin:index",
        "docs",
        "schema",
        "openai-models",
        "usage",
        "health",
        "ready",
        "version",
        "metrics",
    ):
        assert f'<a href="{reverse(name)}">' in html, name
    assert f"POST {reverse('chat-completions')}" in html
    assert f"POST {reverse('responses')}" in html
    assert 'base_url="http://testserver/v1"' in html


def test_the_admins_view_site_link_leads_to_the_landing_page(admin_client):
    html = html_of(admin_client.get(reverse("admin:index")))

    assert f'<a href="{reverse("home")}">View site</a>' in html
    assert reverse("home") == "/"


@pytest.mark.parametrize("path", ["/index.html", "/v1/", "/api/", "/admin"])
def test_the_landing_page_shadows_no_other_path(client, path):
    response = client.get(path)

    assert response.status_code in (301, 404), path
    if response.status_code == 404:
        assert response.json()["error"]["code"] == "not_found"


def test_the_admin_home_page_links_the_playground(admin_client):
    html = html_of(admin_client.get(reverse("admin:index")))

    assert (
        f'<a href="{reverse("admin:chatmodels_registeredmodel_playground")}">Playground</a>' in html
    )


def test_favicon_is_an_icon_not_a_404(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 302
    assert response["Location"].endswith(".svg")
