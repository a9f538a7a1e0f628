"""Reads of the registry: what they return, and a query count that does not grow with it."""

from __future__ import annotations

import pytest

from chatmodels import selectors, services
from chatmodels.exceptions import AliasNotFound, InvalidRequest, ModelNotFound, VersionNotFound
from chatmodels.models import ModelVersion
from tests.helpers import grow_registry, register
from tests.sample_models import TriggerModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo() -> ModelVersion:
    """echo/1 (alias prod) and echo/2 (latest), tagged."""
    first = register(name="echo", model=TriggerModel(), aliases=["prod"], tags={"team": "a"})
    register(name="echo", model=TriggerModel())
    return first


# --- parse_model_reference --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("echo", ("echo", None, None)),
        ("echo/3", ("echo", 3, None)),
        ("echo@prod", ("echo", None, "prod")),
        ("my.model_v2-b", ("my.model_v2-b", None, None)),
    ],
)
def test_parse_model_reference(reference, parsed):
    assert selectors.parse_model_reference(reference) == parsed


@pytest.mark.parametrize("reference", ["", "echo/", "echo/x", "echo/0", "a/1/2", "a@b@c", "@p"])
def test_parse_model_reference_refuses_malformed_references(reference):
    with pytest.raises(InvalidRequest) as raised:
        selectors.parse_model_reference(reference)
    assert raised.value.param == "model"


# --- resolve_version --------------------------------------------------------------------------


def test_resolve_version_by_latest_number_and_alias(echo):
    assert selectors.resolve_version(name="echo").version == 2
    assert selectors.resolve_version(name="echo", version=1).id == echo.pk
    assert selectors.resolve_version(name="echo", alias="prod").id == echo.pk


def test_latest_skips_archived_versions(echo):
    ModelVersion.objects.filter(model__name="echo", version=2).update(
        status=ModelVersion.Status.ARCHIVED
    )
    assert selectors.resolve_version(name="echo").version == 1

    # A pinned version or an alias still reaches an archived version.
    assert selectors.resolve_version(name="echo", version=2).version == 2
    ModelVersion.objects.filter(model__name="echo").update(status=ModelVersion.Status.ARCHIVED)
    with pytest.raises(VersionNotFound, match="model 'echo' has no ready version"):
        selectors.resolve_version(name="echo")


def test_an_alias_move_is_seen_by_the_next_resolve(echo):
    assert selectors.resolve_version(name="echo", alias="prod").version == 1
    services.set_alias(name="echo", alias="prod", version=2)
    assert selectors.resolve_version(name="echo", alias="prod").version == 2


def test_an_alias_of_another_model_is_not_found(echo):
    register(name="other", model=TriggerModel(), aliases=["canary"])

    with pytest.raises(AliasNotFound, match="model 'echo' has no alias 'canary'"):
        selectors.resolve_version(name="echo", alias="canary")


@pytest.mark.parametrize(
    ("lookup", "error", "message"),
    [
        ({"name": "nope"}, ModelNotFound, "model 'nope' not found"),
        ({"name": "nope", "alias": "prod"}, ModelNotFound, "model 'nope' not found"),
        ({"name": "echo", "version": 9}, VersionNotFound, "model 'echo' has no version 9"),
        ({"name": "echo", "alias": "gone"}, AliasNotFound, "model 'echo' has no alias 'gone'"),
    ],
)
def test_resolve_version_errors_name_what_is_missing(echo, lookup, error, message):
    with pytest.raises(error, match=message):
        selectors.resolve_version(**lookup)


@pytest.mark.parametrize(
    "lookup",
    [{"name": "echo"}, {"name": "echo", "version": 1}, {"name": "echo", "alias": "prod"}],
    ids=["latest", "version", "alias"],
)
def test_resolve_version_is_one_query_however_large_the_registry(
    echo, lookup, django_assert_num_queries
):
    for models, versions in ((0, 0), (15, 4)):
        grow_registry(echo, models=models, versions=versions)
        with django_assert_num_queries(1):
            version = selectors.resolve_version(**lookup)
            assert version.model_name == "echo"  # the model comes with it


# --- list_models / list_versions --------------------------------------------------------------


def test_list_models_annotates_latest_count_aliases_and_tags(echo):
    register(name="summarizer", model=TriggerModel())
    ModelVersion.objects.filter(model__name="echo", version=2).update(
        status=ModelVersion.Status.ARCHIVED
    )

    models = {model.name: model for model in selectors.list_models()}

    assert list(models) == ["echo", "summarizer"]
    assert (models["echo"].latest_version, models["echo"].version_count) == (1, 2)
    assert [(a.name, a.version.version) for a in models["echo"].aliases.all()] == [("prod", 1)]
    assert [(t.key, t.value) for t in models["echo"].tags.all()] == [("team", "a")]
    assert (models["summarizer"].latest_version, models["summarizer"].version_count) == (1, 1)


def test_list_models_costs_three_queries_however_many_models(echo, django_assert_num_queries):
    for models, versions in ((0, 0), (15, 4)):
        grow_registry(echo, models=models, versions=versions)
        with django_assert_num_queries(3):  # models, aliases with versions, tags
            listed = list(selectors.list_models())
            for model in listed:
                _ = [alias.version.version for alias in model.aliases.all()]
                _ = [tag.key for tag in model.tags.all()]
        assert len(listed) == 1 + models


def test_list_versions_newest_first_with_aliases(echo):
    versions = list(selectors.list_versions(name="echo"))

    assert [version.version for version in versions] == [2, 1]
    assert [alias.name for alias in versions[1].aliases.all()] == ["prod"]
    with pytest.raises(ModelNotFound):
        selectors.list_versions(name="nope")


def test_list_versions_costs_three_queries_however_many_versions(echo, django_assert_num_queries):
    for models, versions in ((0, 0), (5, 20)):
        grow_registry(echo, models=models, versions=versions)
        with django_assert_num_queries(3):  # the model, its versions, their aliases
            listed = list(selectors.list_versions(name="echo"))
            for version in listed:
                _ = [str(version), *[alias.name for alias in version.aliases.all()]]
        assert len(listed) == 2 + versions


# --- API keys ---------------------------------------------------------------------------------


def test_get_api_key_finds_active_keys_only(echo):
    key, raw_key = services.create_api_key(name="ci", models=["echo"])

    assert selectors.get_api_key(raw_key) == selectors.ApiKeyInfo(
        id=key.pk, name="ci", prefix=key.prefix, restricted=True
    )
    assert selectors.get_api_key(raw_key + "x") is None
    assert selectors.get_api_key("") is None
    services.revoke_api_key(key=key)
    assert selectors.get_api_key(raw_key) is None


def test_key_allows_its_models_or_all_when_none_are_listed(echo):
    other = register(name="other", model=TriggerModel())
    limited = selectors.get_api_key(services.create_api_key(name="limited", models=["echo"])[1])
    everything = selectors.get_api_key(services.create_api_key(name="everything")[1])

    assert selectors.key_allows(limited, echo.model)
    assert not selectors.key_allows(limited, other.model)
    assert selectors.key_allows(everything, other.model.pk)


def test_get_api_key_is_one_query_however_many_keys_and_models(echo, django_assert_num_queries):
    _, raw_key = services.create_api_key(name="ci", models=["echo"])
    for keys in (0, 30):
        for index in range(keys):
            services.create_api_key(name=f"key-{index}")
        grow_registry(echo, models=keys // 3, versions=1)
        with django_assert_num_queries(1):
            key = selectors.get_api_key(raw_key)
        assert key.name == "ci"
        with django_assert_num_queries(1):
            assert selectors.key_allows(key, echo.model)
