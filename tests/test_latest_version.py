"""The latest version is one rule, the ready version with the highest number, and every door
agrees on it: the queryset, the serving hot path's SQL, the API, the admin, the playground, the
commands."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from chatmodels import selectors
from chatmodels.exceptions import VersionNotFound
from chatmodels.models import ModelVersion, RegisteredModel
from tests.api.calls import get
from tests.helpers import copy_version, make_key, register
from tests.sample_models import TriggerModel

pytestmark = pytest.mark.django_db

READY = ModelVersion.Status.READY
ARCHIVED = ModelVersion.Status.ARCHIVED


def make_versions(statuses: list[str]) -> RegisteredModel:
    """A model "echo" whose versions 1..N have these statuses (numbers in order)."""
    first = register(name="echo", model=TriggerModel())
    for number in range(2, len(statuses) + 1):
        copy_version(first, model=first.model, number=number)
    for number, status in enumerate(statuses, start=1):
        ModelVersion.objects.filter(model=first.model, version=number).update(status=status)
    return first.model


STATUS_CASES = [
    pytest.param([READY], 1, id="one-ready"),
    pytest.param([READY, READY, READY], 3, id="newest-ready"),
    pytest.param([READY, READY, ARCHIVED], 2, id="newest-archived"),
    pytest.param([ARCHIVED, READY, ARCHIVED], 2, id="only-middle-ready"),
    pytest.param([READY, ARCHIVED, ARCHIVED, ARCHIVED], 1, id="oldest-ready"),
    pytest.param([ARCHIVED, ARCHIVED], None, id="all-archived"),
]


@pytest.mark.parametrize(("statuses", "latest"), STATUS_CASES)
def test_latest_ready_is_the_ready_version_with_the_highest_number(statuses, latest):
    model = make_versions(statuses)

    found = ModelVersion.objects.latest_ready(model=model).first()

    assert (found.version if found else None) == latest


@pytest.mark.parametrize(("statuses", "latest"), STATUS_CASES)
def test_the_serving_sql_agrees_with_the_queryset(statuses, latest):
    model = make_versions(statuses)
    queryset = ModelVersion.objects.latest_ready(model=model).first()

    if latest is None:
        assert queryset is None
        with pytest.raises(VersionNotFound, match="has no ready version"):
            selectors.resolve_version(name="echo")
    else:
        resolved = selectors.resolve_version(name="echo")
        assert (resolved.id, resolved.version) == (queryset.pk, queryset.version)


def test_next_number_counts_archived_versions_too():
    model = make_versions([READY, ARCHIVED, ARCHIVED])
    assert ModelVersion.objects.next_number(model=model) == 4

    # So a new registration never reuses the number of an archived version.
    assert register(name="echo", model=TriggerModel()).version == 4


def test_next_number_of_a_new_model_is_one():
    model = RegisteredModel.objects.create(name="fresh")

    assert ModelVersion.objects.next_number(model=model) == 1


def test_with_latest_version_annotates_number_and_id_in_one_query(django_assert_num_queries):
    model = make_versions([READY, READY, ARCHIVED])
    second = ModelVersion.objects.get(model=model, version=2)
    RegisteredModel.objects.create(name="empty")

    with django_assert_num_queries(1):
        rows = {m.name: m for m in RegisteredModel.objects.with_latest_version()}

    assert (rows["echo"].latest_version, rows["echo"].latest_version_id) == (2, second.pk)
    assert (rows["empty"].latest_version, rows["empty"].latest_version_id) == (None, None)


@pytest.mark.parametrize(("statuses", "latest"), STATUS_CASES)
def test_every_door_shows_the_same_latest_version(client, admin_client, statuses, latest):
    make_versions(statuses)
    raw_key = make_key(name="reader")[1]

    api = get(client, "/api/models/echo/", key=raw_key).json()["latest_version"]
    api_list = get(client, "/api/models/", key=raw_key).json()["results"][0]["latest_version"]
    command = StringIO()
    call_command("list_models", stdout=command)
    command_latest = command.getvalue().splitlines()[1].split()[1]
    admin_list = admin_client.get(reverse("admin:chatmodels_registeredmodel_changelist"))
    admin_latest = re.search(
        r'<td class="field-latest_and_try_display">(.*?)</td>', admin_list.content.decode()
    ).group(1)
    playground = admin_client.get(reverse("admin:chatmodels_registeredmodel_playground"))
    config = json.loads(
        re.search(
            r'<script id="cm-playground-config" type="application/json">(.*?)</script>',
            playground.content.decode(),
            re.S,
        ).group(1)
    )

    assert api == api_list == config["models"][0]["latest"] == latest
    assert command_latest == (str(latest) if latest else "-")
    assert (f"<strong>v{latest}</strong>" if latest else "—") in admin_latest
