"""What one chat request did, measured once by the pipeline and reported when it ends.

`chat.answer_chat` makes a `ChatCall` when a request enters, tells it the resolved version, the
first streamed chunk and the model's usage, and calls `finish()` once when the answer is done
(a stream: its last event, or the client going away). `finish()` hands the outcome to the
Prometheus metrics, the tracing span, the per-key token limits and the usage accounting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from chatmodels import limits, metrics, tracing, usage
from chatmodels.exceptions import (
    ChatModelsError,
)
from chatmodels.selectors import ApiKeyInfo, ResolvedVersion
from chatmodels.serving import lookups

logger = logging.getLogger(__name__)

# The status of a stream whose client went away before its end (nginx's convention).
CLIENT_CLOSED = 499


class ChatCall:
    """One chat request as the pipeline sees it, from its start to the end of its answer."""

    __slots__ = (
        "_finished",
        "_in_flight",
        "_metrics",
        "_span",
        "_started",
        "first_chunk_at",
        "key",
        "reservation",
        "route",
        "usage",
        "version",
    )

    def __init__(
        self,
        *,
        request: HttpRequest | Any,
        key: ApiKeyInfo | None,
        model: str,
        body: Mapping[str, Any],
    ) -> None:
        self._started = time.perf_counter()
        match = getattr(request, "resolver_match", None)
        self.route: str = (match.url_name or "") if match is not None else ""
        self.key = key
        self.version: ResolvedVersion | None = None
        self.first_chunk_at: float | None = None
        self.usage: Mapping[str, Any] | None = None
        self.reservation: limits.Reservation | None = None  # tokens the limits reserved
        self._finished = False
        self._in_flight = False  # counted by metrics.request_started
        self._metrics = metrics.enabled()
        self._span = tracing.start_chat_span(model=model, meta=request.META, body=body)

    def resolved(self, version: ResolvedVersion) -> None:
        """The request's version is known: from now on it counts as in flight for its model."""
        self.version = version
        if self._metrics:
            metrics.request_started(version.model_name)
            self._in_flight = True

    def first_chunk(self) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()

    def set_usage(self, usage: Mapping[str, Any] | None) -> None:
        self.usage = usage

    def finish(self, *, error: BaseException | None = None, client_closed: bool = False) -> None:
        """Report the outcome (once, however often it is called). Never raises: the answer
        has been given, and a failure to record it must not turn it into an error."""
        if self._finished:
            return
        self._finished = True
        try:
            self._report(error, client_closed)
        except Exception:
            logger.exception("recording a chat request failed")

    async def afinish(
        self, *, error: BaseException | None = None, client_closed: bool = False
    ) -> None:
        """`finish()` from a coroutine: counting tokens against a key's limits may wait on the
        limits store, so it is done in a thread then (the rest takes microseconds)."""
        if self._finished:
            return
        if limits.counts_tokens(self.key):
            self._finished = True
            try:
                await lookups.in_thread(self._report, error, client_closed)
            except Exception:
                logger.exception("recording a chat request failed")
            return
        self.finish(error=error, client_closed=client_closed)

    def _report(self, error: BaseException | None, client_closed: bool) -> None:
        seconds = time.perf_counter() - self._started
        prompt_tokens = _tokens(self.usage, "prompt_tokens")  # None: the model reported none
        completion_tokens = _tokens(self.usage, "completion_tokens")
        prompt, completion = prompt_tokens or 0, completion_tokens or 0
        kind = _as_domain_error(error)
        version = self.version
        model, number = (version.model_name, str(version.version)) if version else ("", "")
        answered = kind.status_code if kind is not None else 200
        if self._metrics:
            metrics.record_request(
                model=model,
                version=number,
                route=self.route,
                status=CLIENT_CLOSED if client_closed and kind is None else answered,
                seconds=seconds,
                first_chunk_seconds=(
                    self.first_chunk_at - self._started if self.first_chunk_at else None
                ),
                prompt_tokens=prompt,
                completion_tokens=completion,
                model_error=kind.model_error_type if kind is not None else None,
                was_in_flight=self._in_flight,
            )
        if self._span is not None:
            tracing.end_chat_span(
                self._span,
                response_model=str(version) if version else None,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                error_type=(kind.code or type(error).__name__) if kind is not None else None,
                error_message=str(error) if error is not None else None,
            )
        limits.record_tokens(self.key, prompt + completion, reservation=self.reservation)
        if version is not None:  # usage is kept per version: requests that reached one
            usage.record(
                version,
                self.key,
                seconds=seconds,
                prompt_tokens=prompt,
                completion_tokens=completion,
                error=kind.usage_kind if kind is not None else None,
            )


def _tokens(usage: Mapping[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if usage else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_domain_error(error: BaseException | None) -> ChatModelsError | None:
    """What the client was answered: the error's own status and code, else a 500."""
    if error is None or isinstance(error, ChatModelsError):
        return error
    return ChatModelsError(str(error))
