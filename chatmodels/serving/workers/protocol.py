"""Everything that crosses between the gateway and a model worker: the framing and each message.

A worker serves one version over one Unix stream socket (a socketpair: no path on disk). Each
message is a frame: a 4-byte big-endian length, then the message as a JSON object (orjson).
Requests are multiplexed by `id` (an int the gateway picks); every request ends with exactly one
final message for its id (`result`, `end` or `error`), also after a `cancel`.

Encoding, measured (encode + decode of one message, best of 5 x 100,000, Python 3.11):

    codec     chunk message (264 B)   4 KB chat.completion message
    json      11.6 µs                 33.4 µs
    orjson     1.7 µs                  4.0 µs
    msgpack    3.8 µs                  5.6 µs

orjson is 3 to 8 times faster than the standard library for the same bytes, and plain JSON keeps
what the worker sends readable in a debugger; msgpack saves 60 bytes a chunk but is slower. It
is one added dependency (a single wheel, no dependencies of its own). What it cannot encode
(a set, a datetime, an int over 64 bits, a non-str key in a model's dict) is that request's
"invalid output" error, raised in the worker before anything is sent.

A frame is at most `max_frame` bytes (the gateway's CHATMODELS_WORKER_MAX_FRAME_BYTES, passed to
the worker at start): a worker whose answer is larger sends that request a `too_large` error
instead; a frame over the limit from either side is a broken peer, and the connection ends.

Gateway -> worker:
    predict  id, request                run `predict` on a chat request dict
    stream   id, request, credit        run `predict_stream` (or `predict`, for one chunk), and
                                        send at most `credit` chunks before more is granted
    credit   id, n                      `n` more chunks may be sent for stream `id`
    cancel   id                         stop request `id` (task cancelled / generator closed)
    stats    id                         ask for a `stats` reply

Worker -> gateway:
    ready    pid, streams, predict_async, stream_async
                                        the version is loaded (sent once, first)
    load_failed  error, message, traceback
                                        loading failed (sent once, first; then the worker exits)
    result   id, type, value            `predict`'s answer (final)
    chunk    id, type, value            one chunk of a stream
    end      id                         the stream is over (final)
    error    id, error, message, traceback [, upstream]
                                        request `id` failed (final); `error` is one of ERRORS;
                                        `upstream` (with `error` "upstream"): the status, type,
                                        code, param and retry_after of a model's UpstreamError
    stats    id, pid, rss, in_flight    the answer to `stats`

`type` says what the model gave: "ChatResponse" or "ChatChunk" (`value` is its `to_dict()`,
checked in the worker), an agent's answer or stream item ("ResponsesAgentResponse",
"ResponsesAgentStreamEvent", "ChatAgentResponse", "ChatAgentChunk": checked in the worker, as a
dict), or "dict" (a ChatModel's plain dict, as it was); written as strict JSON. A `request` is
in the format of the model's interface (a chat request, a ResponsesAgentRequest or a
ChatAgentRequest dict). The gateway checks every value again: nothing a worker sends is trusted.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

from chatmodels.serving import strict_json

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

# Each kind and the fields it must carry (besides `kind`).
TO_WORKER: dict[str, tuple[str, ...]] = {
    "predict": ("id", "request"),
    "stream": ("id", "request", "credit"),
    "credit": ("id", "n"),
    "cancel": ("id",),
    "stats": ("id",),
}
TO_GATEWAY: dict[str, tuple[str, ...]] = {
    "ready": ("pid", "streams", "predict_async", "stream_async"),
    "load_failed": ("error", "message", "traceback"),
    "result": ("id", "type", "value"),
    "chunk": ("id", "type", "value"),
    "end": ("id",),
    "error": ("id", "error", "message", "traceback"),
    "stats": ("id", "pid", "rss", "in_flight"),
}
# The final messages of a request.
FINAL = frozenset({"result", "end", "error"})
# What an `error` message's `error` says.
RAISED = "raised"  # the model raised: `message` is packaging.describe_error's line
INVALID_OUTPUT = "invalid_output"  # not a ChatResponse/ChatChunk/dict: `message` previews it
TOO_LARGE = "too_large"  # the answer does not fit in a frame
CANCELLED = "cancelled"  # stopped by a `cancel`
BAD_REQUEST = "bad_request"  # the request dict is not a valid chat request
UPSTREAM = "upstream"  # the model raised UpstreamError: answer its status
ERRORS = frozenset({RAISED, INVALID_OUTPUT, TOO_LARGE, CANCELLED, BAD_REQUEST, UPSTREAM})
# Output types
CHAT_RESPONSE, CHAT_CHUNK, PLAIN_DICT = "ChatResponse", "ChatChunk", "dict"


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class FrameTooLarge(ValueError):
    """A message does not fit in one frame."""


# A value already serialized as JSON, embedded in a message as it is.
Raw = orjson.Fragment


def message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, **fields}


def encode(value: dict[str, Any], max_frame: int) -> bytes:
    """One frame; TypeError for what JSON cannot hold, FrameTooLarge when over `max_frame`."""
    try:
        payload = orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        raise TypeError(str(error)) from None
    if len(payload) > max_frame:
        raise FrameTooLarge(f"{len(payload)} bytes, over the frame limit of {max_frame}")
    return HEADER.pack(len(payload)) + payload


async def read(
    reader: asyncio.StreamReader, max_frame: int, kinds: dict[str, tuple[str, ...]]
) -> dict[str, Any] | None:
    """The next message, checked against `kinds`; None at a clean end of the stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise ProtocolError("the connection ended inside a frame header") from None
        return None
    (size,) = HEADER.unpack(header)
    if size > max_frame:
        raise ProtocolError(f"a frame of {size} bytes, over the limit of {max_frame}")
    try:
        payload = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the connection ended inside a frame") from None
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        value = _loads_escaped_surrogates(payload, error)
    if not isinstance(value, dict):
        raise ProtocolError("a frame that is not a JSON object")
    fields = kinds.get(value.get("kind"))  # type: ignore[arg-type]
    if fields is None or any(name not in value for name in fields):
        raise ProtocolError(f"an unknown or incomplete message: kind {value.get('kind')!r}")
    return value


def _loads_escaped_surrogates(payload: bytes, error: Exception) -> Any:
    """A frame orjson refused: JSON text may escape a lone surrogate (a model's answer may hold
    one; the gateway then refuses it, naming the field), which only Python's decoder reads."""
    try:
        return strict_json.loads_json(payload)
    except ValueError:
        raise ProtocolError(f"a frame that is not JSON: {error}") from None
