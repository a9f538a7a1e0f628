"""The registry tables: a version's content is immutable, its status is not."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from chatmodels.exceptions import ImmutableVersionError
from chatmodels.models import ModelVersion
from tests.helpers import register
from tests.sample_models import TriggerModel

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 7),
        ("digest", "0" * 64),
        ("class_path", "other.module:Other"),
        ("source_code", "import os"),
        ("input_example", {"messages": [{"role": "user", "content": "changed"}]}),
        ("model_config", {"injected": True}),
        ("created_by", "someone-else"),
        ("package", "packages/echo/another.zip"),
    ],
)
def test_saving_a_changed_content_field_is_refused(field, value):
    version = ModelVersion.objects.get(pk=register(name="echo", model=TriggerModel()).pk)

    setattr(version, field, value)
    with pytest.raises(ImmutableVersionError, match=f"echo/1 is immutable.*{field}"):
        version.save()

    stored = ModelVersion.objects.get(pk=version.pk)
    assert getattr(stored, field) != getattr(version, field)


def test_an_in_place_edit_of_a_json_field_is_refused():
    version = ModelVersion.objects.get(pk=register(name="echo", model=TriggerModel()).pk)

    version.signature["inputs"]["required"] = []
    with pytest.raises(ImmutableVersionError, match="signature"):
        version.save()

    assert ModelVersion.objects.get(pk=version.pk).signature["inputs"]["required"] == ["messages"]


def test_moving_a_version_to_another_model_is_refused():
    version = register(name="echo", model=TriggerModel())
    other = register(name="other", model=TriggerModel())

    version.model = other.model
    with pytest.raises(ImmutableVersionError, match="model"):
        version.save()


def test_status_may_change_and_nothing_else_does():
    registered = register(name="echo", model=TriggerModel())
    before = ModelVersion.objects.filter(pk=registered.pk).values().get()

    version = ModelVersion.objects.get(pk=registered.pk)
    version.status = ModelVersion.Status.ARCHIVED
    version.save()
    registered.status = ModelVersion.Status.READY  # the instance registration returned
    registered.save()
    deferred = ModelVersion.objects.defer("signature", "source_code").get(pk=registered.pk)
    deferred.status = ModelVersion.Status.ARCHIVED
    deferred.save()

    after = ModelVersion.objects.filter(pk=registered.pk).values().get()
    assert after.pop("status") == ModelVersion.Status.ARCHIVED
    before.pop("status")
    assert after == before


def test_update_fields_without_content_fields_skips_the_check(django_assert_num_queries):
    version = ModelVersion.objects.get(pk=register(name="echo", model=TriggerModel()).pk)
    version.status = ModelVersion.Status.ARCHIVED

    with django_assert_num_queries(1):  # the UPDATE alone
        version.save(update_fields=["status"])

    assert ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.ARCHIVED


def test_version_numbers_are_unique_per_model():
    version = register(name="echo", model=TriggerModel())
    fields = {name: getattr(version, name) for name in ModelVersion.CONTENT_FIELDS}
    fields["package"] = version.package.name

    with pytest.raises(IntegrityError):
        ModelVersion.objects.create(**fields)


def test_string_forms_name_the_model_and_version():
    version = register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "a"})

    assert str(version) == "echo/1"
    assert str(version.model) == "echo"
    assert str(version.model.aliases.get()) == "echo@prod"
    assert str(version.model.tags.get()) == "team=a"
