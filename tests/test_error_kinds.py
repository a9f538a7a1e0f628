"""Each error declares how usage counts it, and the declarations agree with its HTTP status:
what the usage API, the admin's charts and the usage table say of an error kind is true."""

from __future__ import annotations

import pytest

from chatmodels import exceptions
from chatmodels.exceptions import (
    INVALID_REQUEST,
    MODEL_ERROR,
    REJECTED,
    TIMEOUT,
    ChatModelsError,
)


def _all_errors(cls: type[ChatModelsError] = ChatModelsError) -> list[type[ChatModelsError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_errors(sub))
    return found


def _kind_of(status: int):
    """The usage counter an answer of `status` belongs in."""
    if status in (429, 503):
        return REJECTED
    if status == 504:
        return TIMEOUT
    return MODEL_ERROR if status >= 500 else INVALID_REQUEST


@pytest.mark.parametrize("error_class", _all_errors(), ids=lambda cls: cls.__name__)
def test_an_error_is_counted_as_its_status_says(error_class: type[ChatModelsError]) -> None:
    assert error_class.usage_kind is _kind_of(error_class.status_code)


def test_only_failures_of_the_model_have_a_model_error_type() -> None:
    typed = {cls.__name__: cls.model_error_type for cls in _all_errors() if cls.model_error_type}
    assert typed == {
        "ModelRaised": "raised",
        "ModelLoadError": "load",
        "InvalidModelOutput": "invalid_output",
        "ModelCrashed": "crashed",
        "ModelTimeout": "timeout",
        "UpstreamFailed": "upstream",  # a 5xx of its upstream (per instance: a 4xx has none)
    }
    assert exceptions.ERROR_KINDS == (INVALID_REQUEST, REJECTED, MODEL_ERROR, TIMEOUT)


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422, 429, 500, 502, 503, 504])
def test_an_upstream_error_is_counted_as_its_own_status_says(status: int) -> None:
    error = exceptions.UpstreamFailed("upstream said no", status=status)

    assert (error.status_code, error.usage_kind) == (status, _kind_of(status))
    assert error.model_error_type == (None if status < 500 else "upstream")
