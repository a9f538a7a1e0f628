"""Graceful shutdown through the real server: a stream still running when SIGTERM's graceful
timeout nears its end is cut with an error event and [DONE], and its request is counted."""

from __future__ import annotations

import http.client
import json
import signal
from urllib.parse import urlsplit

import pytest

from tests.live import deployment

SHELL_USAGE = (
    "import json; from django.db.models import Sum; from chatmodels.models import UsageBucket;"
    " print(json.dumps(UsageBucket.objects.filter(model__name='counter')"
    ".aggregate(requests=Sum('requests'), rejected=Sum('rejected'))))"
)


@pytest.mark.slow
def test_sigterm_mid_stream_ends_the_stream_with_an_error_event_and_counts_it(tmp_path):
    with deployment(tmp_path) as installation:
        installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
        key = installation.create_api_key("streams")
        # Usage written only at exit (an hour between writes): what the exit writes is all.
        base = installation.start_server(
            "web", workers=1, GRACEFUL_TIMEOUT="4", CHATMODELS_USAGE_FLUSH_SECONDS="3600"
        )
        (server,) = installation.processes
        address = urlsplit(base)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        # WordCount streams "hold", then waits 60 s before the rest: far past the timeout.
        body = {
            "model": "counter",
            "stream": True,
            "messages": [{"role": "user", "content": "hold 60 a b"}],
        }
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200
        first = response.readline()  # the first event: the stream is running
        assert first.startswith(b"data: {"), first

        server.popen.send_signal(signal.SIGTERM)
        rest = response.read().decode()  # to the end of the stream
        connection.close()
        assert server.popen.wait(timeout=60) == 0, server.log()[-3000:]

        events = [line[len("data: ") :] for line in rest.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]", rest
        error = json.loads(events[-2])["error"]
        assert error["code"] == "model_unavailable"
        assert "shutting down" in error["message"]
        output = installation.manage("shell", "-c", SHELL_USAGE).stdout.strip().splitlines()[-1]
        assert json.loads(output) == {"requests": 1, "rejected": 1}
