"""What a fuzzer sends first: odd digits, huge numbers, NaN, lone surrogates, wrongly typed
parts. Each is a 400 or 404 naming the field, never a 500, and never a traceback in the log.
Also `/ready`, which tells an anonymous caller what is down but not why.
"""

from __future__ import annotations

import http.client
import json
import logging
from urllib.parse import quote, urlsplit

import pytest

from chatmodels.selectors import MAX_VERSION
from tests.api.calls import completion_text, error_of, get, post
from tests.helpers import chat
from tests.live import deployment

INVOCATIONS = "/api/models/echo/invocations"
COMPLETIONS = "/v1/chat/completions"

pytestmark = pytest.mark.django_db


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def server_log():
    """Every record of the loggers a server writes (chatmodels and django do not propagate);
    after each test: none carries a traceback, and a 4xx gave only its request line."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("", "django", "chatmodels")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)
    for record in handler.records:
        assert record.exc_info is None, record.getMessage()
        if record.name == "django.request":  # Django's line for a 5xx (here /ready's 503) only
            assert record.status_code >= 500, record.getMessage()
        else:
            assert record.levelno < logging.ERROR, record.getMessage()


def call(client, key, door: str, reference: str, body=None):
    """One request for `reference` (`echo`, `echo/2`, `echo@prod`) through one door."""
    body = chat("hi") if body is None else body
    name, _, version = reference.partition("/")
    version = quote(version)  # as an HTTP client sends it: percent-encoded UTF-8
    if door == "invocations":
        query = f"?version={version}" if version else ""
        return post(client, f"/api/models/{name}/invocations{query}", body, key=key)
    if door == "completions":
        return post(client, COMPLETIONS, {**body, "model": reference}, key=key)
    if door == "version-detail":
        return get(client, f"/api/models/{name}/versions/{version}/", key=key)
    assert door == "openai-model"
    return get(client, f"/v1/models/{reference}", key=key)


DOORS = ["invocations", "completions", "version-detail", "openai-model"]
PARAM = {
    "invocations": "version",
    "completions": "model",
    "version-detail": "version",
    "openai-model": "model",
}


# --- version numbers ---------------------------------------------------------------------------

ODD_VERSIONS = [
    pytest.param("²", id="superscript-two"),
    pytest.param("¹", id="superscript-one"),
    pytest.param("٢", id="arabic-indic-two"),  # int("٢") == 2: must not mean version 2
    pytest.param("\uff12", id="fullwidth-two"),
    pytest.param("0", id="zero"),
    pytest.param(" 2", id="leading-space"),
    pytest.param("+2", id="plus-sign"),
    pytest.param(str(MAX_VERSION + 1), id="past-the-column"),
    pytest.param(str(2**64), id="past-64-bits"),
    pytest.param("9" * 5000, id="past-4300-digits"),
]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("version", ODD_VERSIONS)
def test_a_version_that_is_not_ascii_digits_in_range_is_a_400_naming_it(
    client, echo, key, door, version
):
    error = error_of(call(client, key, door, f"echo/{version}"), 400)

    assert error["param"] == PARAM[door]
    assert error["code"] == "invalid_value"
    assert f"from 1 to {MAX_VERSION} in ASCII digits" in error["message"]
    assert len(error["message"]) < 200  # 5,000 digits are not echoed back


@pytest.mark.parametrize("door", DOORS)
def test_the_largest_version_number_is_well_formed_and_simply_not_found(client, echo, key, door):
    error = error_of(call(client, key, door, f"echo/{MAX_VERSION}"), 404)

    assert error["code"] == "version_not_found"


@pytest.mark.parametrize("door", DOORS)
def test_ascii_digits_still_name_a_version(client, echo, key, door):
    response = call(client, key, door, "echo/1")

    assert response.status_code == 200, response.content
    if door in ("invocations", "completions"):
        assert completion_text(response) == "v1:hi"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        (INVOCATIONS + "?version=", "version"),
        (INVOCATIONS + "?alias=", "alias"),
    ],
)
def test_an_empty_version_or_alias_is_a_400_not_the_latest(client, echo, key, path, param):
    error = error_of(post(client, path, chat("hi"), key=key), 400)

    assert error["param"] == param


@pytest.mark.parametrize("reference", ["echo/", "echo@"])
def test_a_model_reference_with_an_empty_version_or_alias_is_a_400(client, echo, key, reference):
    error = error_of(post(client, COMPLETIONS, chat(model=reference), key=key), 400)

    assert error["param"] == "model"


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        ("echo@pr\u0000od", "alias_not_found"),
        ("ec\u0000ho", "model_not_found"),
        ("nö-such-model", "model_not_found"),
        ("x" * 200, "model_not_found"),
    ],
)
def test_a_name_or_alias_no_model_can_have_is_not_found(client, echo, key, reference, code):
    error = error_of(post(client, COMPLETIONS, chat(model=reference), key=key), 404)

    assert error["code"] == code
    assert "\u0000" not in error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/models/ec%00ho/",
        "/api/models/ec%00ho/versions/",
        "/api/models/ec%00ho/versions/1/",
        "/v1/models/ec%00ho",
        "/api/models/n%C3%B6/",
        # Not a reference at all: OpenAI answers any id it does not know with a 404.
        "/v1/models/%40x",
        "/v1/models/@",
    ],
)
def test_a_url_with_a_name_no_model_can_have_is_a_404(client, echo, key, path):
    error = error_of(get(client, path, key=key), 404)

    assert error["code"] == "model_not_found"
    assert error["param"] is None  # as OpenAI's


# --- pages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["", "²", "٢", "0", "-1", "abc", "9" * 5000])
def test_a_page_that_is_not_a_page_number_is_a_400_naming_it(client, echo, key, page):
    error = error_of(get(client, f"/api/models/?page={page}", key=key), 400)

    assert error["param"] == "page"
    assert len(error["message"]) < 200


def test_page_numbers_still_work(client, echo, key):
    assert get(client, "/api/models/?page=1", key=key).json()["count"] == 1
    assert get(client, "/api/models/echo/versions/?page=last", key=key).status_code == 200
    assert error_of(get(client, "/api/models/?page=2", key=key), 404)["code"] == "not_found"


# --- NaN and Infinity --------------------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
FLOAT_PARAMS = ["temperature", "top_p", "frequency_penalty", "presence_penalty"]


@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
@pytest.mark.parametrize("field", FLOAT_PARAMS)
@pytest.mark.parametrize("number", NON_FINITE)
def test_nan_and_infinity_are_refused_naming_the_field(client, echo, key, path, field, number):
    raw = _raw_body(extra=f', "{field}": {number}')

    error = error_of(post(client, path, key=key, raw=raw), 400)

    assert error["param"] == field
    assert error["message"] == (
        f"{field}: expected a finite number, got {number} (NaN and Infinity are not JSON)"
    )


def test_nan_deep_inside_the_body_is_refused_with_its_path(client, echo, key):
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "custom_inputs": {"w": [1, NaN]}}'

    error = error_of(post(client, INVOCATIONS, key=key, raw=raw), 400)

    assert error["param"] == "custom_inputs.w[1]"


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        (b'{"model": "echo", "input": "hi", "temperature": NaN}', "temperature", "finite"),
        (b'{"model": "echo", "input": "hi\\ud800"}', "input", "lone UTF-16 surrogate"),
    ],
)
def test_the_responses_api_reads_strict_json_too(client, echo, key, raw, param, message):
    error = error_of(post(client, "/v1/responses", key=key, raw=raw), 400)

    assert error["param"] == param
    assert message in error["message"]


def test_large_but_finite_numbers_still_pass(client, echo, key):
    # temperature is bounded (0 to 2, as OpenAI's); a vendor key is not.
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1.5e0, "scale": 1e308}'

    assert completion_text(post(client, INVOCATIONS, key=key, raw=raw)) == "v2:hi"


# --- lone surrogates ---------------------------------------------------------------------------


def _raw_body(model: str = '"echo"', content: str = '"hi"', extra: str = "") -> bytes:
    text = f'{{"model": {model}, "messages": [{{"role": "user", "content": {content}}}]{extra}}}'
    return text.encode()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        pytest.param(_raw_body(model='"echo\\ud800"'), "model", id="in-model"),
        pytest.param(_raw_body(model='"\\udfff"'), "model", id="low-surrogate-model"),
        pytest.param(_raw_body(content='"a\\ud83d"'), "messages[0].content", id="in-content"),
        pytest.param(
            _raw_body(extra=', "user": "\\uDC00\\uD800"'), "user", id="reversed-pair-uppercase"
        ),
        pytest.param(
            _raw_body(extra=', "custom_inputs": {"\\ud800": 1}'),
            "custom_inputs",
            id="in-a-key",
        ),
    ],
)
@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
def test_a_lone_surrogate_anywhere_in_the_body_is_a_400_naming_the_field(
    client, echo, key, path, raw, param
):
    response = post(client, path, key=key, raw=raw)

    error = error_of(response, 400)
    assert error["param"] is not None and error["param"].startswith(param)
    assert "lone UTF-16 surrogate" in error["message"]
    # The answer is strict JSON itself: no surrogate echoed back (UTF-8 cannot encode one).
    json.dumps(response.json(), ensure_ascii=False).encode("utf-8")


def test_a_raw_utf8_encoded_surrogate_is_a_400(client, echo, key):
    raw = b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'

    error = error_of(post(client, INVOCATIONS, key=key, raw=raw), 400)

    assert error["message"].startswith("the request body is not valid JSON: not UTF-8 text")


def test_a_surrogate_pair_is_an_emoji_and_passes(client, echo, key):
    raw = _raw_body(content='"smile \\ud83d\\ude00"')

    assert completion_text(post(client, COMPLETIONS, key=key, raw=raw)) == "v2:smile \U0001f600"


# --- content parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("part_type", [["text"], {"text": 1}, 3, None, True])
@pytest.mark.parametrize("path", [INVOCATIONS, COMPLETIONS])
def test_a_content_part_type_that_is_not_a_string_is_a_400_naming_it(
    client, echo, key, path, part_type
):
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": [{"type": part_type, "text": "hi"}]}],
    }

    error = error_of(post(client, path, body, key=key), 400)

    assert error["param"] == "messages[0].content[0].type"
    assert error["message"].startswith("messages[0].content[0].type: expected one of")


# --- /ready ------------------------------------------------------------------------------------


def test_ready_says_what_is_down_but_not_why(client, settings, tmp_path, server_log):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the package folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "packages": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "packages")},
        },
    }

    response = client.get("/ready")

    error = error_of(response, 503)
    assert error["code"] == "unavailable"
    assert "database: ok" in error["message"]
    assert "storage: unavailable" in error["message"]
    assert str(tmp_path) not in response.content.decode()
    assert "Error" not in error["message"]  # no exception class or text
    # The cause is in the server log, on one line.
    (warning,) = [r for r in server_log if r.name == "chatmodels.api.views"]
    assert "readiness check storage failed" in warning.getMessage()
    assert str(blocker) in warning.getMessage()


def test_ready_when_all_is_well(client):
    response = client.get("/ready")

    assert response.status_code == 200
    assert json.loads(response.content) == {
        "status": "ready",
        "checks": {"database": "ok", "storage": "ok"},
    }


# --- through the production server -------------------------------------------------------------


def _raw_request(base_url: str, method: str, path: str, body: bytes | None, key: str):
    """One request with a body sent byte for byte (no client-side JSON encoding)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


LIVE_CASES = [
    ("POST", "/api/models/echo/invocations?version=%C2%B2", _raw_body(), 400),
    ("POST", COMPLETIONS, _raw_body(model='"echo/\\u00b9"'), 400),
    ("POST", COMPLETIONS, _raw_body(model='"echo/\\u0663"'), 400),  # Arabic-Indic 3
    ("GET", "/api/models/echo/versions/%C2%B2/", None, 400),
    ("GET", "/v1/models/echo/%C2%B2", None, 400),
    ("POST", "/api/models/echo/invocations?version=" + "9" * 5000, _raw_body(), 400),
    ("POST", COMPLETIONS, _raw_body(model=f'"echo/{2**64}"'), 400),
    ("POST", COMPLETIONS, _raw_body(model='"echo\\ud800"'), 400),
    ("POST", COMPLETIONS, _raw_body(extra=', "temperature": NaN'), 400),
    ("POST", COMPLETIONS, _raw_body(content='[{"type": ["text"], "text": "hi"}]'), 400),
    ("GET", "/api/models/?page=", None, 400),
    ("POST", COMPLETIONS, _raw_body(model='"echo/1"'), 200),
]


@pytest.mark.slow
def test_a_real_server_answers_odd_input_with_400s_and_logs_no_traceback(tmp_path):
    with deployment(tmp_path) as installation:
        installation.manage("register_model", "echo", "tests.sample_models:PrefixModel")
        key = installation.create_api_key()
        server = installation.start_server("server", workers=1)

        answers = [
            (method, path[:60], *_raw_request(server, method, path, body, key))
            for method, path, body, _status in LIVE_CASES
        ]
        log = "\n".join(process.log() for process in installation.processes)

    for (method, path, status, content), case in zip(answers, LIVE_CASES, strict=True):
        assert status == case[3], (method, path, content, log)
        _ = json.loads(content)  # a JSON answer (an error object, or the completion)
    assert "Traceback" not in log and '"traceback"' not in log, log
    assert '"level": "ERROR"' not in log, log
    # One line per request, the request line: no second "Bad Request: …" from Django.
    assert log.count('"logger": "chatmodels.requests"') >= len(LIVE_CASES), log
    assert '"logger": "django.request"' not in log, log
